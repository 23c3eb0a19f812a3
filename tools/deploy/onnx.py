"""ONNX export of a pose model or classifier (BN folded, dynamic input size), verified against
the PyTorch model at two input sizes, with the model's config and codec in the file's metadata.
`python -m selecsls.tools.export` is the command over `export_checkpoint`.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import torch

from selecsls.backbones.checkpoint import read_checkpoint
from selecsls.backbones.fusion import fuse_bn
from selecsls.heads import Model
from selecsls.heads.pose3d.lifting import find_lifting
from selecsls.tools.realtime.outputs import temporary_beside
from selecsls.tools.realtime.pose3d import LIFTING_KEY, lifting_to_text
from selecsls.tools.realtime.runtime import load_pose_file, require_onnxruntime

INPUT_NAME = "images"
DEFAULT_OPSET = 17


class ExportError(RuntimeError):
    """The exported graph does not reproduce the PyTorch model."""


class _TupleOutputs(torch.nn.Module):
    """The model with its dict of outputs flattened to a tuple in a fixed key order (ONNX graphs
    have positional outputs; the names are attached at export)."""

    def __init__(self, model: torch.nn.Module, names: list[str]) -> None:
        super().__init__()
        self.model, self.names = model, names

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outputs = self.model(images)
        return tuple(outputs[name] for name in self.names)


def output_ranks(model: Model, input_size: tuple[int, int]) -> dict[str, int]:
    """{output name: number of dimensions}, in the model's output order."""
    with torch.no_grad():
        outputs = model(torch.zeros(1, 3, input_size[1], input_size[0]))
    return {name: value.dim() for name, value in outputs.items()}


def export_onnx(
    model: Model, path: str | Path, input_size: tuple[int, int], opset: int = DEFAULT_OPSET
) -> list[str]:
    """Trace `model` (eval mode) to an ONNX file with dynamic batch, height and width; returns
    the output names."""
    ranks = output_ranks(model, input_size)
    names = list(ranks)
    dummy = torch.zeros(1, 3, input_size[1], input_size[0])
    dynamic = {INPUT_NAME: {0: "batch", 2: "height", 3: "width"}}
    for name, rank in ranks.items():  # maps get dynamic sizes; flat outputs (logits) only a batch
        spatial = {2: f"{name}_height", 3: f"{name}_width"} if rank == 4 else {}
        dynamic[name] = {0: "batch", **spatial}
    with warnings.catch_warnings():  # the TorchScript exporter announces its deprecation
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _TupleOutputs(model, names),
            (dummy,),
            str(path),
            input_names=[INPUT_NAME],
            output_names=names,
            dynamic_axes=dynamic,
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
    return names


def verify(
    model: Model, path: str | Path, sizes: list[tuple[int, int]], rtol: float = 1e-4
) -> dict[str, float]:
    """Run the ONNX file and the PyTorch model (fp32) on the same random input at each (W, H);
    returns the largest relative error per output (max |onnx - torch| / max |torch|) and raises
    ExportError when one exceeds rtol or a shape differs."""
    ort = require_onnxruntime()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    generator = torch.Generator().manual_seed(0)
    errors: dict[str, float] = {}
    for width, height in sizes:
        images = torch.randn(1, 3, height, width, generator=generator)
        with torch.no_grad():
            expected = {k: v.float().numpy() for k, v in model(images).items()}
        names = [o.name for o in session.get_outputs()]
        got = dict(zip(names, session.run(names, {INPUT_NAME: images.numpy()})))
        for name, reference in expected.items():
            if name not in got or got[name].shape != reference.shape:
                shape = got[name].shape if name in got else "missing"
                raise ExportError(
                    f"output {name!r} at {width}x{height}: onnx {shape} vs torch {reference.shape}"
                )
            scale = max(float(np.abs(reference).max()), 1e-12)
            error = float(np.abs(got[name] - reference).max()) / scale
            errors[name] = max(errors.get(name, 0.0), error)
            if error > rtol:
                raise ExportError(
                    f"output {name!r} at {width}x{height}: relative error {error:.2e} > {rtol:.0e}"
                )
    return errors


def add_metadata(path: str | Path, metadata: dict[str, str]) -> None:
    """Store string key/values in the ONNX file's metadata_props (read by the demo)."""
    import onnx

    graph = onnx.load(str(path))
    for key, value in metadata.items():
        entry = graph.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(graph, str(path))


def second_size(input_size: tuple[int, int]) -> tuple[int, int]:
    """A different size not divisible by 16, to prove the graph's size is dynamic."""
    return input_size[0] + 24, max(16, input_size[1] - 40)


def export_checkpoint(
    checkpoint: str,
    output: str,
    input_size: tuple[int, int] = (512, 320),
    opset: int = DEFAULT_OPSET,
    fuse: bool = True,
    rtol: float = 1e-4,
) -> dict[str, float]:
    """Load, export to a temporary file, verify, add metadata, rename to `output`."""
    target = Path(output)
    if target.suffix.lower() != ".onnx":
        raise ValueError(f"--output {output}: the file name must end in .onnx")
    if not target.parent.is_dir():
        raise FileNotFoundError(f"--output {output}: folder {target.parent} does not exist")
    model = load_pose_file(checkpoint).eval()
    deploy = fuse_bn(model) if fuse else model
    experiment = {}
    if Path(checkpoint).is_file():
        experiment = read_checkpoint(Path(checkpoint)).get("experiment") or {}
    temporary = temporary_beside(target, ".onnx")
    try:
        export_onnx(deploy, temporary, input_size, opset)
        # the reference is the unfused fp32 model: the check covers the folding too
        errors = verify(model, temporary, [input_size, second_size(input_size)], rtol)
        metadata = {
            "selecsls_config": json.dumps(model.config),
            "input_size": f"{input_size[0]}x{input_size[1]}",
            "input": "float32 (N, 3, H, W) RGB, ImageNet mean/std normalised",
            "codec": json.dumps(experiment.get("codec") if isinstance(experiment, dict) else None),
        }
        lifting = find_lifting(model)
        if lifting is not None:  # Stage II travels in the file, for the demo's 3D poses
            metadata[LIFTING_KEY] = lifting_to_text(lifting)
        add_metadata(temporary, metadata)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return errors
