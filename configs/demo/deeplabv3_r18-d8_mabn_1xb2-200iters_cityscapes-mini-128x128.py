# DeepLabv3 with Moving Average Batch Normalization + centred convs (MABN,
# Yan et al., ICLR 2020) at 2 images per step, trained from scratch for 200
# iterations on the bundled Cityscapes mini set on one CPU process, then
# validated (per-class IoU table + mIoU). Real mmseg classes: ResNetV1c-18
# (d8) backbone, ASPPHead, FCNHead (aux). The classifier convs (conv_seg) stay
# plain nn.Conv2d. Nothing is downloaded: no pretrained weights. The BN
# baseline's network, data and schedule with the conv/norm layers of the mabn
# model base, plus a summary of those layers logged before training
# (LayerSummaryHook).
# MABN's schedule, scaled to 200 iterations (the base's values are the
# authors', for schedules of 10^5 iterations):
# - buffer_num=16 (the base's): the moving averages cover 16 steps x 2 images,
#   the authors' 32-image setting;
# - warmup_iters=20 instead of 100: the current batch's statistics for the
#   first 20 iterations (10% of the run; 100 would be half of it), the moving
#   averages after;
# - renorm_iters=100 instead of 1000: renormalization (r clipped to
#   [1/5, 5]) runs in the second half, so every part of MABN is used;
# - momentum=0.1 instead of 0.02: the running statistic that eval uses must
#   forget its initial value (1) and follow the weights within 200
#   iterations; at 0.02 it would lag by ~50 iterations (the BN baseline's
#   BatchNorm uses 0.1 too).
# The ResNet-18 lines repeat the baseline's: a config cannot inherit both the
# baseline and the mabn model base, as both define `model`.
_base_ = [
    '../_base_/models/deeplabv3_r50-d8_mabn.py',
    '../_base_/datasets/cityscapes_mini.py', '../_base_/default_runtime.py',
    '../_base_/schedules/schedule_200iters.py'
]
crop_size = (128, 128)
data_preprocessor = dict(size=crop_size)
norm_cfg = dict(
    type='MABN',
    buffer_num=16,
    warmup_iters=20,
    renorm_iters=100,
    momentum=0.1,
    requires_grad=True)
model = dict(
    data_preprocessor=data_preprocessor,
    backbone=dict(depth=18, norm_cfg=norm_cfg),
    decode_head=dict(in_channels=512, channels=128, norm_cfg=norm_cfg),
    auxiliary_head=dict(in_channels=256, channels=64, norm_cfg=norm_cfg))
randomness = dict(seed=0)
custom_hooks = _base_.custom_hooks + [dict(type='LayerSummaryHook')]
