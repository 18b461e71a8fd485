# mmdet's Mask R-CNN R-50-FPN with GroupNorm (32 groups) + Weight
# Standardization "everywhere", the recipe of the authors' detection code
# and of mmdet's own gn+ws configs: WSConv2d + GN in the backbone, the FPN,
# the box head (4 shared convs + 1 fc) and the mask head. WS takes the `std`
# form of the authors' GN+WS ImageNet checkpoints. mmdet's RPNHead has no
# conv/norm settings, so its 3x3 conv stays plain, as in both of those.
# Each config names the converted checkpoint its backbone starts from
# (mmdet's base names torchvision's BN ResNet-50, which WS layers must not
# start from).
_base_ = 'mmdet::_base_/models/mask-rcnn_r50_fpn.py'
custom_imports = dict(imports=['mmseg_wsbcn'], allow_failed_imports=False)
conv_cfg = dict(type='WSConv2d', mode='std')
norm_cfg = dict(type='GN', num_groups=32, requires_grad=True)
model = dict(
    backbone=dict(conv_cfg=conv_cfg, norm_cfg=norm_cfg),
    neck=dict(conv_cfg=conv_cfg, norm_cfg=norm_cfg),
    roi_head=dict(
        bbox_head=dict(
            type='Shared4Conv1FCBBoxHead',
            conv_out_channels=256,
            conv_cfg=conv_cfg,
            norm_cfg=norm_cfg),
        mask_head=dict(conv_cfg=conv_cfg, norm_cfg=norm_cfg)))
