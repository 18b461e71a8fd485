# The ResNeXt-50 32x4d version, from the authors' BCN+WS ImageNet ResNeXt-50.
_base_ = './mask-rcnn_r50_fpn_bcn-ws-all_4xb1-2x_coco.py'
checkpoint_file = 'checkpoints/wsbcn/rx50_bcn_ws_mmseg.pth'
model = dict(
    backbone=dict(
        type='ResNeXt',
        groups=32,
        base_width=4,
        init_cfg=dict(checkpoint=checkpoint_file)))
