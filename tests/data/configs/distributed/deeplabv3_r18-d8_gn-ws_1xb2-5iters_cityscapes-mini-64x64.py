# The tiny distributed-test DeepLabv3 with GN + WS instead of BCN: no layer
# depends on the batch, so 2 images per step equal 1 image per step with
# gradients accumulated over 2 steps (optim_wrapper.accumulative_counts=2,
# twice the iterations). Constant learning rate: a scheduler steps every
# iteration, so with accumulation it would advance twice per update.
_base_ = ['./deeplabv3_r18-d8_bcn-ws_1xb2-10iters_cityscapes-mini-64x64.py']

norm_cfg = dict(type='GN', num_groups=4, requires_grad=True)
model = dict(
    backbone=dict(norm_cfg=dict(_delete_=True, **norm_cfg)),
    decode_head=dict(norm_cfg=dict(_delete_=True, **norm_cfg)),
    auxiliary_head=dict(norm_cfg=dict(_delete_=True, **norm_cfg)))
train_cfg = dict(max_iters=5, val_interval=1000)
param_scheduler = [dict(type='ConstantLR', factor=1.0, by_epoch=False)]
# the base's hooks without its FaultInjectionHook (no faults are injected here)
custom_hooks = [
    hook for hook in _base_.custom_hooks if hook.type != 'FaultInjectionHook'
]
