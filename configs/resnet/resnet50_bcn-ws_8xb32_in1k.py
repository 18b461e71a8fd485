# An mmpretrain ImageNet classifier in the setting of the authors' BCN+WS
# ImageNet models (Batch-Channel-Normalization/imagenet): ResNet-50 v1 whose
# every conv is a WSConv2d in the `var` form and every norm a BCN with 32
# groups and batch statistics (`estimate=False`: the authors' batch step
# `pbn` is a BatchNorm), on mmpretrain's ResNet-50 recipe (8 GPUs x 32
# images, SGD lr 0.1, 100 epochs). Needs the mmpretrain extra and a CUDA
# build of torch (docs/openmmlab_projects.md).
_base_ = 'mmpretrain::resnet/resnet50_8xb32_in1k.py'
custom_imports = dict(imports=['mmseg_wsbcn'], allow_failed_imports=False)
model = dict(
    backbone=dict(
        conv_cfg=dict(type='WSConv2d', mode='var'),
        norm_cfg=dict(
            type='BCN', num_groups=32, estimate=False, requires_grad=True)))
