"""Evaluation behind `python -m selecsls.tools.eval CHECKPOINT`: one evaluator per task.

- `common.py`: what every evaluator provides (options, weight loading, the run's own config);
- `classification.py`: top-1 / top-5 on an ImageNet-layout folder;
- `pose2d.py`: pycocotools OKS AP/AR on a COCO-format keypoint set (through the engine's own
  evaluation, so the figures match a run's logged `val_AP`);
- `pose3d.py`: MuPoTS-style 3D metrics for Stage I and Stage II checkpoints.

The metrics themselves live in `selecsls.heads` (`pose2d.metrics`, `pose3d.metrics`), where the
engine reaches them too.
"""
