# DeepLabv3 R-50-D8 with BCN + WS in its large-batch form: BCN's batch step
# uses the statistics of the current batch (`estimate=False`, as BatchNorm;
# synchronized over all GPUs like SyncBN), then the per-sample channel step.
# This is the form of the authors' DeepLab code. Needs more than one value per
# channel in the batch, so it is for large (global) batches only.
# Trains from scratch (`pretrained=None`, see deeplabv3_r50-d8_syncbn.py).
_base_ = ['./deeplabv3_r50-d8_bcn-ws.py']
norm_cfg = dict(estimate=False)
model = dict(
    backbone=dict(norm_cfg=norm_cfg),
    decode_head=dict(norm_cfg=norm_cfg),
    auxiliary_head=dict(norm_cfg=norm_cfg))
