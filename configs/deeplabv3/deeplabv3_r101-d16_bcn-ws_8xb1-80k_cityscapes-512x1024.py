_base_ = './deeplabv3_r50-d16_bcn-ws_8xb1-80k_cityscapes-512x1024.py'
model = dict(backbone=dict(depth=101))
