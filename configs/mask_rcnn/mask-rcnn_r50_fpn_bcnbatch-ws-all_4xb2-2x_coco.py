# Mask R-CNN R-50-FPN with BCN+WS in the backbone, FPN, box head and mask
# head, BCN with batch statistics (`estimate=False`) at 4 GPUs x 2
# images, lr 0.01 (the authors' linear rule), 2x
# (24 epochs). Starts from the authors' BCN+WS ImageNet ResNet-50, converted
# (docs/pretrained.md); WS in its `var` form. The authors publish no COCO
# number for this setting (their published rows are GN+WS, see README.md).
_base_ = [
    '../_base_/models/mask-rcnn_r50_fpn_bcnbatch-ws-all.py',
    'mmdet::_base_/datasets/coco_instance.py',
    'mmdet::_base_/schedules/schedule_2x.py',
    'mmdet::_base_/default_runtime.py'
]
checkpoint_file = 'checkpoints/wsbcn/rn50_bcn_ws_mmseg.pth'
model = dict(
    backbone=dict(
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint_file)))
train_dataloader = dict(batch_size=2)
optim_wrapper = dict(optimizer=dict(lr=0.01))
auto_scale_lr = dict(base_batch_size=8)
