# deeplabv3_r50-d8_gn-ws_8xb1-80k_voc12aug-512x512.py with its backbone
# started from the authors' ImageNet GN+WS ResNet-50, a plain ResNet v1 (7x7
# stem), hence mmseg's `ResNet`, not `ResNetV1c`. GroupNorm + WSConv2d in the
# `std` form the checkpoint was trained with. Convert the checkpoint first
# (docs/pretrained.md):
#   python tools/model_converters/wsbcn2mmseg.py \
#       R-50-GN-WS.pth.tar checkpoints/wsbcn/R-50-GN-WS_mmseg.pth
_base_ = './deeplabv3_r50-d8_gn-ws_8xb1-80k_voc12aug-512x512.py'
checkpoint_file = 'checkpoints/wsbcn/R-50-GN-WS_mmseg.pth'
model = dict(
    backbone=dict(
        type='ResNet',
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint_file)))
