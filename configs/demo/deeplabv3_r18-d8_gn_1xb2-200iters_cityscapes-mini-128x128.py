# A micro-batch demo: DeepLabv3 with GroupNorm (32 groups) and plain convs at
# 2 images per step, trained from scratch for 200 iterations on the bundled
# Cityscapes mini set on one CPU process, then validated (per-class IoU table +
# mIoU): the gn row of the demo results grid (docs/norms.md). The BN
# baseline's network, data and schedule with the layers of the gn model base,
# plus a summary of those layers logged before training (LayerSummaryHook).
_base_ = [
    '../_base_/models/deeplabv3_r50-d8_gn.py',
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
custom_hooks = _base_.custom_hooks + [dict(type='LayerSummaryHook')]
