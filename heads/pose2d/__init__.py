"""Multi-person 2D pose: the XNect Stage I 2D branch (heatmaps + part affinity fields).

- `xnect`: the head (stride-8 keypoint heatmaps and PAFs from the backbone's stride-16 features);
- `codec`: people <-> training targets and network outputs <-> people, the geometry in one place;
- `peaks`, `grouping`: the decoder's peak finding and PAF grouping;
- `loss`: the masked L2 loss and its per-keypoint masks;
- `metrics`: COCO OKS AP through pycocotools (any skeleton's sigmas);
- `crowdpose_metrics`: CrowdPose's official summary, AP easy / medium / hard by crowd index;
- `pckh`: MPII's PCKh@0.5, with a matcher for bottom-up predictions.
"""
