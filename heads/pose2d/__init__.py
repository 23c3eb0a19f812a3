"""Multi-person 2D pose: two interchangeable heads, picked by name (`registry.HEADS_2D`):
the XNect Stage I 2D branch ("xnect2d": heatmaps + part affinity fields, grouped) and the
grouping-free centre + offset head ("centre2d", in `centre/`).

- `registry`: the 2D heads and the codec and loss that follow each one;
- `xnect`: the PAF head (stride-8 keypoint heatmaps and PAFs from the stride-16 features);
- `codec`: the PAF head's people <-> targets and outputs <-> people, and the map geometry both
  heads share;
- `peaks`, `grouping`: the decoder's peak finding and PAF grouping;
- `loss`: the masked L2 loss and its per-keypoint masks;
- `metrics`: COCO OKS AP through pycocotools (any skeleton's sigmas);
- `crowdpose_metrics`: CrowdPose's official summary, AP easy / medium / hard by crowd index;
- `pckh`: MPII's PCKh@0.5, with a matcher for bottom-up predictions;
- `centre/`: the centre + offset head, its codec (centre peaks, offsets, refinement, pose NMS)
  and its loss.
"""
