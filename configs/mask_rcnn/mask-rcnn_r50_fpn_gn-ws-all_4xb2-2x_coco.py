# Mask R-CNN R-50-FPN with GN+WS in the backbone, FPN, box head and mask
# head, 2x schedule (24 epochs), 4 GPUs x 2 images, lr 0.01 (the authors'
# linear rule: 0.01 for 8 images per batch). Starts from the authors' GN+WS
# ImageNet ResNet-50, converted (docs/pretrained.md). Published (authors'
# code, COCO minival): box AP 40.81, mask AP 36.51.
_base_ = [
    '../_base_/models/mask-rcnn_r50_fpn_gn-ws-all.py',
    'mmdet::_base_/datasets/coco_instance.py',
    'mmdet::_base_/schedules/schedule_2x.py',
    'mmdet::_base_/default_runtime.py'
]
checkpoint_file = 'checkpoints/wsbcn/R-50-GN-WS_mmseg.pth'
model = dict(
    backbone=dict(
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint_file)))
train_dataloader = dict(batch_size=2)
optim_wrapper = dict(optimizer=dict(lr=0.01))
auto_scale_lr = dict(base_batch_size=8)
