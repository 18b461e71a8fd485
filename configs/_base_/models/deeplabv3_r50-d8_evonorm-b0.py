# DeepLabv3 R-50-D8 with EvoNorm-B0 (Liu, Brock, Simonyan and Le, NeurIPS
# 2020) at every norm: x / max(sqrt(var_NHW + eps), v * x + sqrt(var_HW +
# eps)) * gamma + beta. Batch-dependent, like BatchNorm: the batch variance
# in training (0 for one value per channel: batch 1 in the ASPP image-pooling
# branch), a running variance (momentum 0.1) in eval. With several GPUs it
# computes the training variance over the global batch, as SyncBN does
# (`sync=True`, default); one process (CPU or one GPU) uses its own batch.
# The activation is built in: the heads' ConvModules drop their ReLU
# (act_cfg=None). mmseg's ResNetV1c keeps its fixed ReLU after its norms (it
# clips the layer's negative outputs), and at the end of each residual
# branch and on the shortcut the layer runs whole before the addition, where
# the authors' ResNet applies its affine alone
# (mmseg_wsbcn/models/layers/evonorm_b0.py).
# Plain convs. Trains from scratch (`pretrained=None`, see
# deeplabv3_r50-d8_syncbn.py).
_base_ = ['./deeplabv3_r50-d8_syncbn.py']
norm_cfg = dict(type='EvoNormB0', requires_grad=True)
model = dict(
    backbone=dict(norm_cfg=norm_cfg),
    decode_head=dict(norm_cfg=norm_cfg, act_cfg=None),
    auxiliary_head=dict(norm_cfg=norm_cfg, act_cfg=None))
