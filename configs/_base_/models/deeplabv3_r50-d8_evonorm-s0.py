# DeepLabv3 R-50-D8 with EvoNorm-S0 (Liu, Brock, Simonyan and Le, NeurIPS
# 2020) at every norm: x * sigmoid(v * x) / group_std(x) * gamma + beta, with
# GroupNorm's per-sample statistics over 32 channel groups (no mean
# subtraction), so it trains at any images per GPU and computes the same in
# training and eval. The activation is built in: the heads' ConvModules drop
# their ReLU (act_cfg=None). mmseg's ResNetV1c keeps its fixed ReLU after
# its norms (it clips the layer's negative outputs), and at the end of each
# residual branch and on the shortcut the layer runs whole before the
# addition, where the authors' ResNet applies its affine alone
# (mmseg_wsbcn/models/layers/evonorm_s0.py).
# Plain convs. Trains from scratch (`pretrained=None`, see
# deeplabv3_r50-d8_syncbn.py).
_base_ = ['./deeplabv3_r50-d8_syncbn.py']
norm_cfg = dict(type='EvoNormS0', num_groups=32, requires_grad=True)
model = dict(
    backbone=dict(norm_cfg=norm_cfg),
    decode_head=dict(norm_cfg=norm_cfg, act_cfg=None),
    auxiliary_head=dict(norm_cfg=norm_cfg, act_cfg=None))
