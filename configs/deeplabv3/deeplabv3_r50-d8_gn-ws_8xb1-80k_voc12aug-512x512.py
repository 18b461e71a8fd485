# Micro-batch GroupNorm + WSConv2d: 8 GPUs x 1 image, total batch 8, half of
# 4xb4, so by the linear rule (README) lr = 0.01 x 8/16 = 0.005 and the
# schedule doubles to 80k iterations (same number of epochs).
_base_ = './deeplabv3_r50-d8_gn-ws_4xb4-40k_voc12aug-512x512.py'
custom_imports = dict(imports=['mmseg_wsbcn'], allow_failed_imports=False)
train_dataloader = dict(batch_size=1)
optim_wrapper = dict(optimizer=dict(lr=0.005))
train_cfg = dict(
    type='IterBasedTrainLoop', max_iters=80000, val_interval=8000)
param_scheduler = [
    dict(
        type='PolyLR',
        eta_min=1e-4,
        power=0.9,
        begin=0,
        end=80000,
        by_epoch=False)
]
default_hooks = dict(checkpoint=dict(interval=8000))
