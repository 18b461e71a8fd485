# DeepLabv3 R-50-D8 with per-GPU BatchNorm (statistics over the images of
# one GPU only) in the backbone, the ASPP head and the auxiliary head.
# Trains from scratch (`pretrained=None`, see deeplabv3_r50-d8_syncbn.py).
_base_ = ['./deeplabv3_r50-d8_syncbn.py']
norm_cfg = dict(type='BN', requires_grad=True)
model = dict(
    backbone=dict(norm_cfg=norm_cfg),
    decode_head=dict(norm_cfg=norm_cfg),
    auxiliary_head=dict(norm_cfg=norm_cfg))
