# DeepLabv3 R-50-D8 with BCN (batch statistics) + WSConv2d on Cityscapes (19
# classes) at 512x1024: mmseg's batch shape (4 GPUs x 2 images, total 8) and
# 80k schedule (SGD lr 0.01, poly). Trains from scratch.
_base_ = [
    '../_base_/models/deeplabv3_r50-d8_bcnbatch-ws.py',
    'mmseg::_base_/datasets/cityscapes.py',
    '../_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_80k.py'
]
crop_size = (512, 1024)
data_preprocessor = dict(size=crop_size)
model = dict(data_preprocessor=data_preprocessor)
