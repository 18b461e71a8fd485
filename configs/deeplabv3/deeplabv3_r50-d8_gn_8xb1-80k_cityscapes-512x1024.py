# Micro-batch GroupNorm (32 groups): 8 GPUs x 1 image, total batch 8 as 4xb2,
# so the learning rate (0.01) and the 80k schedule stay those of 4xb2.
_base_ = './deeplabv3_r50-d8_gn_4xb2-80k_cityscapes-512x1024.py'
train_dataloader = dict(batch_size=1)
