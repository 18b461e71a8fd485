# The BatchNorm baseline of the README's demo: a real mmseg DeepLabv3
# (ResNetV1c-18 backbone, ASPP head, auxiliary FCN head) trained from scratch
# for 200 iterations on the bundled Cityscapes mini set on one CPU process,
# then validated (mIoU). No pretrained weights (nothing is downloaded).
_base_ = [
    '../_base_/models/deeplabv3_r50-d8_bn.py',
    '../_base_/datasets/cityscapes_mini.py',
    '../_base_/default_runtime.py',
    '../_base_/schedules/schedule_200iters.py'
]
crop_size = (128, 128)
data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    backbone=dict(depth=18),
    decode_head=dict(in_channels=512, channels=128),
    auxiliary_head=dict(in_channels=256, channels=64))
randomness = dict(seed=0)
