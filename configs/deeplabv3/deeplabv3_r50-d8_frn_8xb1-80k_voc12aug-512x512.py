# Micro-batch DeepLabv3 R-50-D8 with Filter Response Normalization + TLU (FRN)
# on PASCAL VOC 2012 + SBD aug (21 classes) at 512x512: 8 GPUs x 1 image, total
# batch 8, half of 4xb4, so by the linear rule (README) lr = 0.01 x 8/16 =
# 0.005 and the schedule doubles to mmseg's 80k (same number of epochs). Trains
# from scratch; one row of the normalization zoo (docs/norms.md).
_base_ = [
    '../_base_/models/deeplabv3_r50-d8_frn.py',
    'mmseg::_base_/datasets/pascal_voc12_aug.py',
    '../_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_80k.py'
]
crop_size = (512, 512)
data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    decode_head=dict(num_classes=21),
    auxiliary_head=dict(num_classes=21))
train_dataloader = dict(batch_size=1)
optim_wrapper = dict(optimizer=dict(lr=0.005))
