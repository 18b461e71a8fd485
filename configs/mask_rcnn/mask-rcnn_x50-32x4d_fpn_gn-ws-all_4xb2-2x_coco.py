# The ResNeXt-50 32x4d version (4 GPUs x 2 images, lr 0.01), from the
# authors' GN+WS ImageNet ResNeXt-50, converted. Published (authors' code,
# COCO minival): box AP 42.00, mask AP 37.28.
_base_ = './mask-rcnn_r50_fpn_gn-ws-all_4xb2-2x_coco.py'
checkpoint_file = 'checkpoints/wsbcn/X-50-GN-WS_mmseg.pth'
model = dict(
    backbone=dict(
        type='ResNeXt',
        groups=32,
        base_width=4,
        init_cfg=dict(checkpoint=checkpoint_file)))
