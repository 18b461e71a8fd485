# The R-101 version; convert the authors' ResNet-101 (docs/pretrained.md):
#   python tools/model_converters/wsbcn2mmseg.py \
#       R-101-GN-WS.pth.tar checkpoints/wsbcn/R-101-GN-WS_mmseg.pth
_base_ = './deeplabv3_r50-d8_gn-ws-in1k-pre_8xb1-80k_voc12aug-512x512.py'
checkpoint_file = 'checkpoints/wsbcn/R-101-GN-WS_mmseg.pth'
model = dict(
    backbone=dict(depth=101, init_cfg=dict(checkpoint=checkpoint_file)))
