_base_ = './deeplabv3_r50-d16_bn_4xb4-40k_voc12aug-512x512.py'
model = dict(backbone=dict(depth=101))
