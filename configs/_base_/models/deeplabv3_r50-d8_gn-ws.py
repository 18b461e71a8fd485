# DeepLabv3 R-50-D8 with GroupNorm (32 groups) + Weight Standardization: every
# conv followed by a norm layer (backbone, ASPP head, auxiliary head) is a
# WSConv2d in the `std` form of the authors' GN+WS code and checkpoints:
# (W - mean) / (std + eps). The classifier convs (`conv_seg`) stay plain
# nn.Conv2d. Trains from scratch (`pretrained=None`).
_base_ = ['./deeplabv3_r50-d8_gn.py']
conv_cfg = dict(type='WSConv2d', mode='std')
model = dict(
    backbone=dict(conv_cfg=conv_cfg),
    decode_head=dict(conv_cfg=conv_cfg),
    auxiliary_head=dict(conv_cfg=conv_cfg))
