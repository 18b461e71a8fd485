# The paper's PASCAL VOC setting (Qiao et al., arXiv:1903.10520), as in the
# authors' DeepLab code (Batch-Channel-Normalization/DeepLabV3), which reports
# 78.10 mIoU on VOC val for BCN+WS:
# - ResNet-101, output stride 16; stage 4 dilated by 2 with its first block
#   at 1, i.e. block dilations (1, 2, 2): the authors' "multi-grid (1, 1, 1)"
#   (README.md explains why this is not mmseg's `multi_grid=(1, 1, 1)`);
# - ASPP rates (6, 12, 18) + 1x1 branch + image pooling, 256 channels, no
#   dropout, no auxiliary head, bilinear upsampling with align_corners=True;
# - BCN with batch statistics synchronized over the GPUs (the authors'
#   `pbn` is a SyncBatchNorm) + WSConv2d in every conv before a norm, in the
#   `var` form of the ImageNet checkpoint (their DeepLab code uses `std`);
# - crop 513x513, total batch 16 (4 GPUs x 4 images), SGD momentum 0.9,
#   lr 0.007, poly 0.9 down to 0, weight decay 1e-4, 33,100 iterations
#   (50 epochs of the 10,582 train+aug images: 662 iterations each);
# - backbone initialized from the authors' BCN+WS ImageNet ResNet-101, a plain
#   ResNet v1 (7x7 stem), hence mmseg's `ResNet` and not `ResNetV1c`.
# The checkpoint is NOT downloaded: convert the authors' `rn101_bcn_ws.pth`
# to mmseg's ResNet keys and save it at the path below (README.md); training
# stops with a one-line error naming the path while it is missing.
# Augmentation is mmseg's VOC pipeline with 513x513 crops and evaluation is
# mmseg's VOC test pipeline; README.md lists how they differ from the
# authors' code.
_base_ = './deeplabv3_r101-d16_bcnbatch-ws_4xb4-40k_voc12aug-512x512.py'
checkpoint_file = 'checkpoints/wsbcn/rn101_bcn_ws_mmseg.pth'
crop_size = (513, 513)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(
        type='RandomResize',
        scale=(2048, 512),
        ratio_range=(0.5, 2.0),
        keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='Pad', size=crop_size),
    dict(type='PackSegInputs')
]
train_dataloader = dict(
    dataset=dict(datasets=[
        dict(_base_.dataset_train, pipeline=train_pipeline),
        dict(_base_.dataset_aug, pipeline=train_pipeline),
    ]))
data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    backbone=dict(
        type='ResNet',
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint_file)),
    decode_head=dict(channels=256, dropout_ratio=0.0, align_corners=True),
    auxiliary_head=None)
optim_wrapper = dict(optimizer=dict(lr=0.007, weight_decay=1e-4))
param_scheduler = [
    dict(
        type='PolyLR',
        eta_min=0.0,
        power=0.9,
        begin=0,
        end=33100,
        by_epoch=False)
]
train_cfg = dict(max_iters=33100, val_interval=3310)
default_hooks = dict(checkpoint=dict(interval=3310))
