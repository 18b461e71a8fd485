# Output stride 16 (the DeepLabv3 paper's training setting) instead of 8: the
# third stage keeps its stride 2 (strides 1, 2, 2, 1) and only stage 4 is
# dilated, by 2 (its first block by 1: contract_dilation); ASPP rates (6, 12,
# 18) plus the 1x1 branch and image pooling.
_base_ = './deeplabv3_r50-d8_bcn-ws_8xb1-80k_cityscapes-512x1024.py'
model = dict(
    backbone=dict(dilations=(1, 1, 1, 2), strides=(1, 2, 2, 1)),
    decode_head=dict(dilations=(1, 6, 12, 18)))
