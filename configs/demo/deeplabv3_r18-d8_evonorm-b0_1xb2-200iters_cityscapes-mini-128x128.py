# A micro-batch demo: DeepLabv3 with EvoNorm-B0 at every norm (batch variance
# in training, running variance in eval, activation built in; the heads without
# their separate ReLU), at 2 images per step, trained from scratch for 200
# iterations on the bundled Cityscapes mini set on one CPU process, then
# validated (per-class IoU table + mIoU). Real mmseg classes: ResNetV1c-18 (d8)
# backbone, ASPPHead, FCNHead (aux). Nothing is downloaded: no pretrained
# weights. The BN baseline's network, data and schedule with the norm layers of
# the evonorm-b0 model base, plus a summary of those layers logged before
# training (LayerSummaryHook). The ResNet-18 lines repeat the baseline's: a
# config cannot inherit both the baseline and the evonorm-b0 model base, as
# both define `model`.
_base_ = [
    '../_base_/models/deeplabv3_r50-d8_evonorm-b0.py',
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
