_base_ = './deeplabv3_r50-d8_gn_4xb2-80k_cityscapes-512x1024.py'
model = dict(backbone=dict(depth=101))
