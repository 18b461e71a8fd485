# DeepLabv3 with WS + BCN (estimated statistics) for the distributed tests,
# shrunk so that a 2-process CPU run takes seconds: mmseg's ResNetV1c-18
# (d8) with 16 base channels, ASPPHead and FCNHead (aux), 4 BCN groups.
# Deterministic: every image is resized to 64x64 (no crop, no flip, no
# dropout), seed 0 with deterministic ops, so 2 processes x 1 image and
# 1 process x 2 images see the same global batches (the InfiniteSampler
# deals the same seeded permutation out to the ranks in turn).
#
# The test-only hooks live in tests/data/hooks (put it on PYTHONPATH):
# RankStateRecorderHook dumps each rank's losses and BCN statistics after
# every iteration to <work_dir>/rank_state; FaultInjectionHook does nothing
# unless `action` is set (see tests/test_distributed).
_base_ = [
    '../../../../configs/demo/'
    'deeplabv3_r18-d8_bn_1xb2-200iters_cityscapes-mini-128x128.py'
]
custom_imports = dict(
    imports=['mmseg_wsbcn', 'wsbcn_test_hooks'], allow_failed_imports=False)

img_size = (64, 64)
conv_cfg = dict(type='WSConv2d')
norm_cfg = dict(type='BCN', num_groups=4, estimate=True, requires_grad=True)
# the conv and norm layers of every part (as in the bcn-ws model base)
layers = dict(conv_cfg=conv_cfg, norm_cfg=norm_cfg)
model = dict(
    data_preprocessor=dict(size=img_size),
    backbone=dict(stem_channels=16, base_channels=16, **layers),
    decode_head=dict(
        in_channels=128, channels=32, dropout_ratio=0.0, **layers),
    auxiliary_head=dict(
        in_channels=64, channels=16, dropout_ratio=0.0, **layers))

# the bundled set's pipelines (configs/_base_/datasets/cityscapes_mini.py)
# with one fixed resize in place of their resize and augmentations
resize = dict(type='Resize', scale=img_size, keep_ratio=False)
train_pipeline = [
    t for t in _base_.train_pipeline
    if t.type in ('LoadImageFromFile', 'LoadAnnotations')
] + [resize, dict(type='PackSegInputs')]
test_pipeline = [
    resize if t.type == 'Resize' else t for t in _base_.test_pipeline
]
train_dataloader = dict(batch_size=2, dataset=dict(pipeline=train_pipeline))
# evaluate on 5 of the 6 train images: an odd count, so 2 ranks get a
# padded sampler whose duplicate must be dropped again
test_dataloader = dict(
    batch_size=1,
    dataset=dict(
        data_prefix=dict(
            img_path='leftImg8bit/train', seg_map_path='gtFine/train'),
        indices=5,
        pipeline=test_pipeline))
val_dataloader = test_dataloader

train_cfg = dict(type='IterBasedTrainLoop', max_iters=10, val_interval=1000)
param_scheduler = [
    dict(type='PolyLR', eta_min=1e-4, power=0.9, end=10, by_epoch=False)
]
# log every iteration's own loss (mmseg's default averages over 10)
log_processor = dict(window_size=1)
default_hooks = dict(
    logger=dict(interval=1), checkpoint=dict(interval=2, max_keep_ckpts=-1))
# after the runtime's StopOnNonFiniteLossHook: tests address the fault
# injector as custom_hooks.2
custom_hooks = _base_.custom_hooks + [
    dict(type='RankStateRecorderHook'),
    dict(type='FaultInjectionHook'),
]
randomness = dict(seed=0, deterministic=True)
# a dead or stuck peer fails a collective after 20 s instead of 30 min
env_cfg = dict(dist_cfg=dict(timeout=20))
