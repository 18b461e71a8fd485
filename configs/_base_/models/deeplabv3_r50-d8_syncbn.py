# mmseg's DeepLabv3 R-50-D8 (ResNetV1c backbone, ASPP head, FCN auxiliary
# head) with its default SyncBN, trained from scratch: mmseg's base names
# `open-mmlab://resnet50_v1c`, which would be downloaded; this toolkit never
# downloads, so `pretrained=None`. To start from a local ImageNet checkpoint
# instead, pass `--cfg-options model.pretrained=checkpoints/<file>.pth`
# (see configs/deeplabv3/README.md).
# On one process (CPU or one GPU), MMEngine's Runner reverts SyncBN to BN.
_base_ = ['mmseg::_base_/models/deeplabv3_r50-d8.py']
model = dict(pretrained=None)
