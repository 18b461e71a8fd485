# The FrozenBN baseline on the README's demo: DeepLabv3 whose backbone
# BatchNorms keep their statistics and affine (norm_eval=True,
# requires_grad=False), with GroupNorm (32 groups) in the ASPP and auxiliary
# heads (see configs/_base_/models/deeplabv3_r50-d8_frozenbn.py), at 2 images
# per step, trained from scratch for 200 iterations on the bundled Cityscapes
# mini set on one CPU process, then validated (mIoU). Real mmseg classes:
# ResNetV1c-18 (d8) backbone, ASPPHead, FCNHead (aux). Nothing is downloaded:
# no pretrained weights, so the frozen BatchNorms keep their initial state
# (an unnormalized backbone: the row shows what freezing costs without a
# pretrained backbone; pass model.pretrained=<local checkpoint> to start
# from one). The BN baseline's network, data and schedule with the norm
# layers of the frozenbn model base, plus a summary of those layers logged
# before training (LayerSummaryHook); the ResNet-18 lines repeat the
# baseline's, as both model bases define `model`.
_base_ = [
    '../_base_/models/deeplabv3_r50-d8_frozenbn.py',
    '../_base_/datasets/cityscapes_mini.py', '../_base_/default_runtime.py',
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
