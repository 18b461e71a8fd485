# The R-101 version at 1 image per GPU (4 GPUs x 1, lr 0.005 by the linear
# rule; 2x = 24 epochs, so twice the iterations of 4xb2). Published
# (authors' code, COCO minival): box AP 42.73, mask AP 37.92.
_base_ = './mask-rcnn_r50_fpn_gn-ws-all_4xb2-2x_coco.py'
checkpoint_file = 'checkpoints/wsbcn/R-101-GN-WS_mmseg.pth'
model = dict(
    backbone=dict(depth=101, init_cfg=dict(checkpoint=checkpoint_file)))
train_dataloader = dict(batch_size=1)
optim_wrapper = dict(optimizer=dict(lr=0.005))
auto_scale_lr = dict(base_batch_size=4)
