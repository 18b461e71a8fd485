_base_ = './deeplabv3_r50-d16_bcn-ws_8xb1-80k_voc12aug-512x512.py'
model = dict(backbone=dict(depth=101))
