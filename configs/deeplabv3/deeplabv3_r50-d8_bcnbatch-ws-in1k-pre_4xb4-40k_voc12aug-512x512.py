# deeplabv3_r50-d8_bcnbatch-ws_4xb4-40k_voc12aug-512x512.py with its backbone
# started from the authors' ImageNet BCN+WS ResNet-50, a plain ResNet v1 (7x7
# stem), hence mmseg's `ResNet`, not `ResNetV1c`. BCN with batch statistics +
# WSConv2d in the `var` form the checkpoint was trained with; the
# checkpoint's running statistics serve in eval until training replaces them.
# Convert the checkpoint first (docs/pretrained.md):
#   python tools/model_converters/wsbcn2mmseg.py \
#       rn50_bcn_ws.pth checkpoints/wsbcn/rn50_bcn_ws_mmseg.pth
_base_ = './deeplabv3_r50-d8_bcnbatch-ws_4xb4-40k_voc12aug-512x512.py'
checkpoint_file = 'checkpoints/wsbcn/rn50_bcn_ws_mmseg.pth'
model = dict(
    backbone=dict(
        type='ResNet',
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint_file)))
