# The BatchNorm baseline of the README's demo plus PreciseBN (Wu & Johnson,
# "Rethinking 'Batch' in BatchNorm", arXiv:2105.07576): before each
# validation (here the one at iteration 200) PreciseBNHook recomputes every
# BatchNorm's running mean and variance as the equal-weight average over
# `num_iters` training batches, with the weights fixed, in place of the
# moving average training kept; the checkpoint saved at that iteration holds
# them (mmseg_wsbcn/engine/hooks/precise_bn_hook.py). 20 batches of 2 crops
# here: the mini set has a handful of training images (their crops and flips
# vary); the default, fvcore's and detectron2's, is 200.
#
# PreciseBN is a runtime hook, not a model: to add it to any config, write a
# config that inherits it and extends its custom hooks (keeping the
# NaN-loss stop of the runtime base first):
#
#     _base_ = ['./the_config.py']
#     custom_hooks = _base_.custom_hooks + [
#         dict(type='PreciseBNHook', num_iters=200)]
#
# It recomputes the BatchNorms (BN, SyncBN) and BCN's batch step that are in
# training mode; a FrozenBN backbone (norm_eval=True) is left as it is.
_base_ = ['./deeplabv3_r18-d8_bn_1xb2-200iters_cityscapes-mini-128x128.py']
custom_hooks = _base_.custom_hooks + [dict(type='PreciseBNHook', num_iters=20)]
