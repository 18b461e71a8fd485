# BCN (estimated statistics) + WSConv2d, 8 GPUs x 1 image with gradients
# accumulated over 2 iterations: an effective batch of 16 as 4xb4, so lr 0.01.
# 80k iterations = 40k optimizer steps, the samples and updates of 4xb4-40k.
# Normalization statistics still see 1 image per GPU per forward.
_base_ = './deeplabv3_r50-d8_bcn-ws_8xb1-80k_voc12aug-512x512.py'
optim_wrapper = dict(optimizer=dict(lr=0.01), accumulative_counts=2)
