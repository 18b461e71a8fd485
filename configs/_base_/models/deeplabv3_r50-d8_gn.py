# DeepLabv3 R-50-D8 with GroupNorm (32 groups) in the backbone, the ASPP head
# and the auxiliary head; plain convs. Batch-independent, so it trains at any
# images per GPU. Trains from scratch (`pretrained=None`, see
# deeplabv3_r50-d8_syncbn.py).
_base_ = ['./deeplabv3_r50-d8_syncbn.py']
norm_cfg = dict(type='GN', num_groups=32, requires_grad=True)
model = dict(
    backbone=dict(norm_cfg=norm_cfg),
    decode_head=dict(norm_cfg=norm_cfg),
    auxiliary_head=dict(norm_cfg=norm_cfg))
