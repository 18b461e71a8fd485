# A tiny, fast variant of the demo for tests: 64x64 crops, 10 iterations,
# validation and a checkpoint at the end, logs every iteration.
_base_ = ['../../../configs/demo/'
          'deeplabv3_r18-d8_bn_1xb2-200iters_cityscapes-mini-128x128.py']

crop_size = (64, 64)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='PackSegInputs')
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
model = dict(data_preprocessor=dict(size=crop_size))
train_cfg = dict(max_iters=10, val_interval=10)
param_scheduler = [
    dict(type='PolyLR', eta_min=1e-4, power=0.9, end=10, by_epoch=False)
]
default_hooks = dict(
    logger=dict(interval=1), checkpoint=dict(interval=5))
