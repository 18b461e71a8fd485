# The demo's schedule: mmseg's (SGD, lr 0.01, momentum 0.9, weight decay 5e-4,
# poly decay with power 0.9 to 1e-4) over 200 iterations, validated at the
# end, logging every 20 iterations and saving a checkpoint every 100.
_base_ = ['mmseg::_base_/schedules/schedule_20k.py']
param_scheduler = [
    dict(
        type='PolyLR',
        eta_min=1e-4,
        power=0.9,
        begin=0,
        end=200,
        by_epoch=False)
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=200, val_interval=200)
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=20, log_metric_by_epoch=False),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=100))
