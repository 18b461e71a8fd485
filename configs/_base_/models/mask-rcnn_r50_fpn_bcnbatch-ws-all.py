# The BCN+WS Mask R-CNN with batch statistics in BCN's batch step
# (`estimate=False`, synchronized over the GPUs like SyncBN): the form for 2
# or more images per GPU.
_base_ = ['./mask-rcnn_r50_fpn_bcn-ws-all.py']
norm_cfg = dict(estimate=False)
model = dict(
    backbone=dict(norm_cfg=norm_cfg),
    neck=dict(norm_cfg=norm_cfg),
    roi_head=dict(
        bbox_head=dict(norm_cfg=norm_cfg), mask_head=dict(norm_cfg=norm_cfg)))
