_base_ = './deeplabv3_r50-d16_gn-ws_4xb4-40k_voc12aug-512x512.py'
custom_imports = dict(imports=['mmseg_wsbcn'], allow_failed_imports=False)
model = dict(backbone=dict(depth=101))
