# The R-101 version; convert the authors' ResNet-101 (docs/pretrained.md):
#   python tools/model_converters/wsbcn2mmseg.py \
#       rn101_bcn_ws.pth checkpoints/wsbcn/rn101_bcn_ws_mmseg.pth
_base_ = './deeplabv3_r50-d8_bcnbatch-ws-in1k-pre_4xb4-40k_voc12aug-512x512.py'
checkpoint_file = 'checkpoints/wsbcn/rn101_bcn_ws_mmseg.pth'
model = dict(
    backbone=dict(depth=101, init_cfg=dict(checkpoint=checkpoint_file)))
