# The R-101 version; convert the authors' ResNet-101 (docs/pretrained.md):
#   python tools/model_converters/wsbcn2mmseg.py \
#       rn101_bcn_ws.pth checkpoints/wsbcn/rn101_bcn_ws_mmseg.pth
_base_ = './deeplabv3_r50-d8_bcn-ws-in1k-pre_8xb1-80k_cityscapes-512x1024.py'
checkpoint_file = 'checkpoints/wsbcn/rn101_bcn_ws_mmseg.pth'
model = dict(
    backbone=dict(depth=101, init_cfg=dict(checkpoint=checkpoint_file)))
