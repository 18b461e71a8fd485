# mmdet's Mask R-CNN R-50-FPN with Batch-Channel Normalization (32 groups,
# estimated statistics: the micro-batch form, for 1 image per GPU) + Weight
# Standardization in the `var` form of the authors' BCN+WS ImageNet
# checkpoints, in the backbone, the FPN, the box head (4 shared convs + 1 fc)
# and the mask head. mmdet's RPNHead has no conv/norm settings: its conv
# stays plain. `norm_eval=False`: BCN's statistics keep updating in training
# (mmdet's default `norm_eval=True` would freeze them; the frozen first stage
# still uses its checkpoint statistics). The backbone's init_cfg is set by
# each config (a converted checkpoint; mmdet's base names torchvision's BN
# ResNet-50, which WS layers must not start from).
_base_ = 'mmdet::_base_/models/mask-rcnn_r50_fpn.py'
custom_imports = dict(imports=['mmseg_wsbcn'], allow_failed_imports=False)
conv_cfg = dict(type='WSConv2d', mode='var')
norm_cfg = dict(type='BCN', num_groups=32, estimate=True, requires_grad=True)
model = dict(
    backbone=dict(conv_cfg=conv_cfg, norm_cfg=norm_cfg, norm_eval=False),
    neck=dict(conv_cfg=conv_cfg, norm_cfg=norm_cfg),
    roi_head=dict(
        bbox_head=dict(
            type='Shared4Conv1FCBBoxHead',
            conv_out_channels=256,
            conv_cfg=conv_cfg,
            norm_cfg=norm_cfg),
        mask_head=dict(conv_cfg=conv_cfg, norm_cfg=norm_cfg)))
