"""Multi-person 3D pose: the XNect Stage I 3D branch and Stage II.

- `xnect`: the 3D head (per-joint location maps, fed by the 2D branch's stride-8 features);
- `codec`: people's 3D joints <-> location-map targets, read-out at 2D joints;
- `lifting`, `lifting_points`: Stage II (the per-person fully connected lifting
  network) and its inputs;
- `geometry`: absolute placement (root depth from 2D-3D fit), Procrustes alignment;
- `people`: one image's Stage I (+ II) outputs -> people with 2D keypoints and 3D poses;
- `metrics`: MPJPE, PA-MPJPE, 3DPCK and AUC over matched people.
"""
