# mmdet's Faster R-CNN R-50-FPN with GroupNorm (32 groups) + Weight
# Standardization (`std` form, as the authors' GN+WS ImageNet checkpoints)
# in the backbone, the FPN and the box head (4 shared convs + 1 fc), as in
# mmdet's gn+ws configs; the RPN conv stays plain (RPNHead has no conv/norm
# settings). Each config names the converted checkpoint its backbone starts
# from.
_base_ = 'mmdet::_base_/models/faster-rcnn_r50_fpn.py'
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
            norm_cfg=norm_cfg)))
