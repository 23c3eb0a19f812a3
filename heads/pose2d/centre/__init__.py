"""A grouping-free 2D head (DEKR-style): person centres plus per-keypoint offsets.

- `head`: the network part (keypoint + centre heatmaps, offsets from each centre cell to the
  person's keypoints), from the backbone's stride-16 map, optionally fused with stride 8;
- `codec`: people <-> targets (heatmaps, offsets, offset weights, loss mask) and outputs ->
  people (centre peaks, offsets read at the refined centre, scores, pose NMS);
- `loss`: masked L2 on the heatmaps plus a scale-normalised smooth L1 on the offsets.

The output contract is the PAF codec's (keypoints in original pixels + a score per person), so
evaluation, the flip test, the demo, tracking and export take either head.
"""
