# The README's main job: DeepLabv3 with Weight Standardization + Batch-Channel
# Normalization (estimated statistics: the micro-batch method) at 2 images
# per step, trained from scratch for 200 iterations on the bundled Cityscapes
# mini set on one CPU process, then validated (per-class IoU table + mIoU).
# Real mmseg classes: ResNetV1c-18 (d8) backbone, ASPPHead, FCNHead (aux).
# The classifier convs (conv_seg) stay plain nn.Conv2d. Nothing is
# downloaded: no pretrained weights.
_base_ = ['./deeplabv3_r18-d8_bn_1xb2-200iters_cityscapes-mini-128x128.py']
custom_imports = dict(imports=['mmseg_wsbcn'], allow_failed_imports=False)

conv_cfg = dict(type='WSConv2d')
norm_cfg = dict(type='BCN', num_groups=32, estimate=True, requires_grad=True)
model = dict(
    backbone=dict(conv_cfg=conv_cfg, norm_cfg=norm_cfg),
    decode_head=dict(conv_cfg=conv_cfg, norm_cfg=norm_cfg),
    auxiliary_head=dict(conv_cfg=conv_cfg, norm_cfg=norm_cfg))
custom_hooks = [dict(type='LayerSummaryHook')]
