# Micro-batch DeepLabv3 R-50-D8 with EvoNorm-S0 on Cityscapes (19 classes) at
# 512x1024: 8 GPUs x 1 image, total batch 8 as mmseg's 4xb2, so lr 0.01 and the
# 80k schedule stay mmseg's. Trains from scratch; one row of the normalization
# zoo (docs/norms.md).
_base_ = [
    '../_base_/models/deeplabv3_r50-d8_evonorm-s0.py',
    'mmseg::_base_/datasets/cityscapes.py',
    '../_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_80k.py'
]
crop_size = (512, 1024)
data_preprocessor = dict(size=crop_size)
model = dict(data_preprocessor=data_preprocessor)
train_dataloader = dict(batch_size=1)
