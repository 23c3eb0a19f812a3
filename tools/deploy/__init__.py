"""Making a trained network fast and portable.

- `frozen.py`: the fastest CPU path of a BN-folded network (torch.compile, frozen, bf16);
- `quantize.py`: post-training int8 quantization (calibration on real images);
- `onnx.py`: ONNX export with a dynamic input size, verified against PyTorch
  (`python -m selecsls.tools.export`);
- `prune_report.py`: what pruning kept and how much the output changed
  (`python -m selecsls.tools.prune`).
"""
