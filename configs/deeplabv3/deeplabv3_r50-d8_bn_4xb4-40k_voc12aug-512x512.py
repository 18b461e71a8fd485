# DeepLabv3 R-50-D8 with per-GPU BatchNorm on PASCAL VOC 2012 + SBD aug (21
# classes) at 512x512: mmseg's batch shape (4 GPUs x 4 images, total 16) and
# 40k schedule (SGD lr 0.01, poly). Trains from scratch. BN statistics come
# from the images of one GPU only (4).
_base_ = [
    '../_base_/models/deeplabv3_r50-d8_bn.py',
    'mmseg::_base_/datasets/pascal_voc12_aug.py',
    '../_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_40k.py'
]
crop_size = (512, 512)
data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    decode_head=dict(num_classes=21),
    auxiliary_head=dict(num_classes=21))
