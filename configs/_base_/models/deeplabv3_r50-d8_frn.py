# DeepLabv3 R-50-D8 with Filter Response Normalization + TLU (Singh and
# Krishnan, CVPR 2020) at every norm: each (sample, channel) is divided by
# its root mean square (no mean subtraction, nothing shared across the
# batch), then the learned-threshold activation max(y, tau), so it trains at
# any images per GPU and computes the same in training and eval.
# FRN+TLU replaces a norm -> ReLU pair: the heads' ConvModules drop their
# ReLU (act_cfg=None). mmseg's ResNetV1c keeps its fixed ReLU after its
# norms; right after FRN+TLU it computes max(y, max(tau, 0)) (FRN+TLU while
# tau >= 0), and at the end of each residual branch and on the shortcut the
# TLU runs before the addition (mmseg_wsbcn/models/layers/frn.py). For FRN
# as a pure normalization under ResNet's ReLUs instead:
# --cfg-options model.backbone.norm_cfg.tlu=False.
# eps=1e-6 is the paper's (build_norm_layer would pass 1e-5). The ASPP head
# learns its eps (learnable_eps: eps = 1e-6 + |eps_l|), the paper's remedy
# for 1x1 maps: its image-pooling branch normalizes one value per channel,
# where a fixed eps makes FRN a near sign function.
# Plain convs. Trains from scratch (`pretrained=None`, see
# deeplabv3_r50-d8_syncbn.py).
_base_ = ['./deeplabv3_r50-d8_syncbn.py']
norm_cfg = dict(type='FRN', eps=1e-6, requires_grad=True)
model = dict(
    backbone=dict(norm_cfg=norm_cfg),
    decode_head=dict(
        norm_cfg=dict(norm_cfg, learnable_eps=True), act_cfg=None),
    auxiliary_head=dict(norm_cfg=norm_cfg, act_cfg=None))
