# The paper's headline detection model: Mask R-CNN with a ResNeXt-101 32x4d
# GN+WS backbone at 1 image per GPU (4 GPUs x 1, lr 0.005 by the linear rule),
# 2x, from the authors' GN+WS ImageNet ResNeXt-101, converted. Published
# (COCO minival): box AP 43.12, mask AP 38.34.
_base_ = './mask-rcnn_x50-32x4d_fpn_gn-ws-all_4xb2-2x_coco.py'
checkpoint_file = 'checkpoints/wsbcn/X-101-GN-WS_mmseg.pth'
model = dict(
    backbone=dict(depth=101, init_cfg=dict(checkpoint=checkpoint_file)))
train_dataloader = dict(batch_size=1)
optim_wrapper = dict(optimizer=dict(lr=0.005))
auto_scale_lr = dict(base_batch_size=4)
