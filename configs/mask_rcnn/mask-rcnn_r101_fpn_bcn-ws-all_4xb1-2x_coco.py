# The R-101 version, from the authors' BCN+WS ImageNet ResNet-101.
_base_ = './mask-rcnn_r50_fpn_bcn-ws-all_4xb1-2x_coco.py'
checkpoint_file = 'checkpoints/wsbcn/rn101_bcn_ws_mmseg.pth'
model = dict(
    backbone=dict(depth=101, init_cfg=dict(checkpoint=checkpoint_file)))
