# DeepLabv3 R-50-D8 with Batch-Channel Normalization + Weight Standardization,
# the micro-batch method of Qiao et al. (arXiv:1903.10520): BCN with
# *estimated* statistics (`estimate=True`: running estimates updated from each
# batch and used for normalization, so 1 image per GPU and the 1x1 ASPP
# image-pooling branch work) and 32 channel groups; every conv followed by a
# norm layer is a WSConv2d in its default `var` form,
# (W - mean) / sqrt(var + eps), as in the authors' BCN+WS checkpoints.
# With several GPUs BCN synchronizes its statistics (`sync=True`, default).
# The classifier convs (`conv_seg`) stay plain nn.Conv2d.
# Trains from scratch (`pretrained=None`, see deeplabv3_r50-d8_syncbn.py).
_base_ = ['./deeplabv3_r50-d8_syncbn.py']
conv_cfg = dict(type='WSConv2d')
norm_cfg = dict(type='BCN', num_groups=32, estimate=True, requires_grad=True)
model = dict(
    backbone=dict(conv_cfg=conv_cfg, norm_cfg=norm_cfg),
    decode_head=dict(conv_cfg=conv_cfg, norm_cfg=norm_cfg),
    auxiliary_head=dict(conv_cfg=conv_cfg, norm_cfg=norm_cfg))
