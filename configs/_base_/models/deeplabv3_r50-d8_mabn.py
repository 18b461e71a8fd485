# DeepLabv3 R-50-D8 with Moving Average Batch Normalization + centred convs,
# the micro-batch method of Yan et al., "Towards Stabilizing Batch Statistics
# in Backward Propagation of Batch Normalization" (ICLR 2020; authors' code
# megvii-model/MABN). Every norm (backbone, ASPP head, auxiliary head) is an
# MABN: it normalizes by the second moment E[x^2] (no mean subtraction),
# averaged over the last `buffer_num` iterations in the forward pass, and
# averages the backward pass's gradient statistic the same way, so 1-2 images
# per GPU train like a large batch; eval is a per-channel affine from the
# running statistic, as BN. Every conv followed by a norm layer is a
# CenConv2d, W - mean(W) per output channel, which stands in for the mean
# subtraction MABN drops. The classifier convs (`conv_seg`) stay plain.
# The authors' settings: buffer_num=16 (their real_B / B = 32 / 2), 100
# warmup iterations on the current batch's statistics, renormalization after
# 1000 iterations clipped to [1/5, 5], running statistic momentum 0.02 (their
# 0.98 in the other convention). With several GPUs MABN synchronizes its
# per-iteration statistics (`sync=True`, default).
# Trains from scratch (`pretrained=None`, see deeplabv3_r50-d8_syncbn.py).
_base_ = ['./deeplabv3_r50-d8_syncbn.py']
conv_cfg = dict(type='CenConv2d')
norm_cfg = dict(
    type='MABN',
    buffer_num=16,
    warmup_iters=100,
    renorm_iters=1000,
    momentum=0.02,
    requires_grad=True)
model = dict(
    backbone=dict(conv_cfg=conv_cfg, norm_cfg=norm_cfg),
    decode_head=dict(conv_cfg=conv_cfg, norm_cfg=norm_cfg),
    auxiliary_head=dict(conv_cfg=conv_cfg, norm_cfg=norm_cfg))
