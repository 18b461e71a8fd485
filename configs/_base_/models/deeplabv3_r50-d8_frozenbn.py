# DeepLabv3 R-50-D8 with a FrozenBN backbone: the "norm_eval=True with frozen
# affine" baseline of detection / segmentation fine-tuning at few images per
# GPU, as its own row. Every BatchNorm of the backbone (the deep stem's
# included) keeps its statistics (`norm_eval=True`: mmseg's ResNet puts its
# BatchNorms back in eval mode at every `train()`) and its affine
# (`requires_grad=False`): a fixed per-channel affine, like detectron2's
# FrozenBatchNorm2d. The backbone's convs still train.
# The heads cannot use BatchNorm at 1 image per GPU (the ASPP image-pooling
# branch has a single 1x1 value per channel and image, for which BN's batch
# statistics are undefined), nor a frozen one (they start from scratch), so
# the ASPP head and the auxiliary FCN head use a batch-independent
# GroupNorm (32 groups) that trains; this is a choice of this toolkit, the
# same heads as deeplabv3_r50-d8_gn.py.
# FrozenBN is meant to start from a pretrained backbone, whose statistics it
# keeps: pass `--cfg-options model.pretrained=checkpoints/<file>.pth` (see
# configs/deeplabv3/README.md). From scratch (`pretrained=None`, as
# deeplabv3_r50-d8_syncbn.py) the frozen layers hold BatchNorm's initial
# state (mean 0, variance 1, weight 1, bias 0), i.e. an unnormalized
# backbone.
_base_ = ['./deeplabv3_r50-d8_syncbn.py']
frozen_bn = dict(type='BN', requires_grad=False)
head_norm_cfg = dict(type='GN', num_groups=32, requires_grad=True)
model = dict(
    backbone=dict(norm_cfg=frozen_bn, norm_eval=True),
    decode_head=dict(norm_cfg=head_norm_cfg),
    auxiliary_head=dict(norm_cfg=head_norm_cfg))
