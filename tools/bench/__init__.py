"""Benchmarks. `python -m selecsls.tools.benchmark` times whole models (`models.py`, `timing.py`,
`train.py`, `report.py`); the others time one part, each `python -m selecsls.tools.bench.NAME`:

- `decode`: the 2D pose decoder per frame;
- `demo`: the demo's stages per frame for several backends and precisions;
- `pose2d_data`: the 2D pose training data pipeline, samples/s per worker;
- `prune`: a pruned vs an unpruned classifier, interleaved in one process;
- `transforms`: train-transform throughput, ours vs torchvision's.

`flops.py` counts multiply-accumulates and parameters (used by these and by `tools/info.py`).
"""
