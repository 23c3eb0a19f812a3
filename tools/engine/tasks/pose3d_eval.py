"""3D pose evaluation: Stage I (+ Stage II) on a MuCo/MuPoTS-format (or synthetic) val set.

One pass over the images: the 2D branch's people (decoded in input pixels), their 3D poses read
from the location maps (and lifted by Stage II when the model has it), MuPoTS-style metrics
(`heads.pose3d.metrics.Pose3DEvaluator`: MPJPE, PA-MPJPE, 3DPCK@150mm, AUC over matched people, and
3DPCK/AUC over all people) against the 3D-labelled ground truth, and, when the val json is
COCO-format (the synthetic set), the 2D OKS AP through pycocotools. With Stage II the main 3D
keys are the lifted poses' and "readout_*" the Stage I read-out's. "gt2d_*" reads the location
maps at the ground-truth 2D joints: the 3D branch's quality on its own, even while the 2D
branch still detects nobody.

`evaluate_pose3d_checkpoint` is the entry for `tools/eval.py` (a checkpoint alone -> metrics).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from selecsls.backbones.checkpoint import read_checkpoint
from selecsls.datasets.coco import IMAGENET_MEAN, IMAGENET_STD, DatasetError, load_coco_keypoints
from selecsls.datasets.mix3d import collate_pose3d
from selecsls.datasets.muco import Multi3DDataset
from selecsls.heads.flip_test import predict
from selecsls.heads.pose2d.codec import invert_points
from selecsls.heads.pose2d.metrics import evaluate_keypoints, people_to_results
from selecsls.heads.pose2d.registry import STAGE1_HEADS, head_of, make_codec2d
from selecsls.heads.pose3d.codec import Pose3DCodec
from selecsls.heads.pose3d.lifting import LiftingNet, find_lifting, inputs_from_stage1, lift_people
from selecsls.heads.pose3d.metrics import Pose3DEvaluator
from selecsls.heads.skeletons import coco17_to_joints21_2d
from selecsls.heads.weights import load_model
from selecsls.tools.deploy.quantize import quantize_for_eval

from ..amp import amp_dtype
from ..distributed import DistInfo, ShardedSampler, gather_objects, init_distributed
from .pose3d_data import readout_points
from .pose3d_preview import Pose3DPreviews

RESULT_FILE = "val_results.json"


def normalise_images(batch: dict, device: torch.device, channels_last: bool) -> torch.Tensor:
    """(N, 3, H, W) uint8 "image" -> ImageNet-normalised float on the device."""
    images = batch["image"].to(device, non_blocking=True).float().div_(255)
    mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)
    images = (images - mean) / std
    return images.contiguous(memory_format=torch.channels_last) if channels_last else images


def evaluate_people3d(
    model: nn.Module,
    loader: Any,
    prepare: Callable[[dict], dict],
    codecs: tuple[Any, Pose3DCodec],
    info: DistInfo,
    amp_dtype: torch.dtype | None,
    lifting: LiftingNet | None = None,
    coco: Any = None,
    result_path: Path | None = None,
    match_distance: float = 0.5,
    previews: Pose3DPreviews | None = None,
    flip: bool = False,
) -> dict[str, float]:
    """Metrics over every image of `loader` (this rank's shard), reduced over ranks.

    prepare(batch) -> batch with "images" on the device; coco: the val set's COCO object (2D AP)
    or None; image ids scored for AP are the loader's; previews: collects pictures of the first
    images (2D skeletons + the predicted 3D poses: lifted with Stage II); flip: average each
    image's maps with its mirror image's (heads/flip_test.py). Returns the 3D keys of
    Pose3DEvaluator.summary, the same with prefix "gt2d_" for the location maps read at the
    ground-truth 2D joints (the 3D branch alone, whatever the 2D detector finds), "readout_*" with
    lifting, and with coco "AP", "AP50", ...
    """
    codec2d, codec3d = codecs
    prefixes = ["", "gt2d_"] + (["readout_"] if lifting is not None else [])
    evaluators = {p: Pose3DEvaluator(max_relative_distance=match_distance) for p in prefixes}
    results: list[dict] = []
    image_ids: list[int] = []
    model.eval()
    with torch.no_grad():
        for raw in loader:
            batch = prepare(raw)
            with torch.autocast(
                info.device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None
            ):
                outputs = predict(model, batch["images"], flip)
            maps = {k: outputs[k].cpu() for k in (*codec2d.output_keys, "locmaps")}
            for n, image_id in enumerate(batch["image_id"]):
                image_maps = {k: v[n] for k, v in maps.items()}
                keypoints, scores = codec2d.decode_outputs(image_maps)
                poses = add_image(evaluators, image_maps, keypoints, batch, n, codec3d, lifting)
                if previews is not None:
                    previews.add(batch["image"][n], keypoints, poses)
                image_ids.append(int(image_id))
                if coco is not None:
                    found = keypoints[..., 2] > 0
                    original = invert_points(batch["transform"][n], keypoints[..., :2])
                    keypoints[..., :2] = np.where(found[..., None], original, 0)
                    results.extend(people_to_results(image_id, keypoints, scores))
    metrics: dict[str, float] = {}
    if coco is not None:
        results = [r for part in gather_objects(results, info) for r in part]
        ids = sorted({i for part in gather_objects(image_ids, info) for i in part})
        scored = evaluate_keypoints(
            coco, results, result_path=result_path if info.is_main else None, image_ids=ids
        )
        metrics.update(scored)
    for prefix, evaluator in evaluators.items():
        merged = merge_evaluators(gather_objects(evaluator, info))
        metrics.update({prefix + k: v for k, v in summary(merged).items()})
    return metrics


def add_image(
    evaluators: dict[str, Pose3DEvaluator],
    maps: dict[str, torch.Tensor],
    keypoints: np.ndarray,
    batch: dict[str, Any],
    n: int,
    codec3d: Pose3DCodec,
    lifting: LiftingNet | None,
) -> np.ndarray:
    """Image n's detected people (keypoints (P, 17, 3), input pixels) into the evaluators;
    returns their predicted poses (P, 21, 3), root-relative mm (lifted with Stage II)."""
    points2d = coco17_to_joints21_2d(keypoints)
    poses = {"": codec3d.decode(maps["locmaps"], points2d)[0]}
    if lifting is not None:
        poses["readout_"] = poses[""]
        poses[""] = lift_people(lifting, inputs_from_stage1(maps["locmaps"], points2d, codec3d))
    labelled = batch["has_3d"][n].numpy().astype(bool)
    gt3d = batch["joints3d"][n].numpy()[labelled]
    gt2d = batch["points2d"][n].numpy()[labelled]
    oracle = readout_points(batch["keypoints"][n].numpy()[labelled], gt2d)
    poses["gt2d_"] = codec3d.decode(maps["locmaps"], oracle)[0]
    with warnings.catch_warnings():  # Procrustes of a person with no usable joint
        warnings.simplefilter("ignore", RuntimeWarning)
        for prefix, evaluator in evaluators.items():
            found2d = gt2d if prefix == "gt2d_" else points2d
            evaluator.add_image(poses[prefix], found2d, gt3d, gt2d)
    return poses[""]


def merge_evaluators(parts: list[Pose3DEvaluator]) -> Pose3DEvaluator:
    """One evaluator holding every rank's accumulated people."""
    merged = parts[0]
    for part in parts[1:]:
        merged.errors += part.errors
        merged.pa_errors += part.pa_errors
        merged.misses += part.misses
        merged.people += part.people
    return merged


def summary(evaluator: Pose3DEvaluator) -> dict[str, float]:
    """Pose3DEvaluator.summary, with the PCK/AUC of matched people 0 (not NaN) when ground-truth
    people exist but none was matched: NaN would stick as the best value of a run."""
    out = evaluator.summary()
    if out["people_gt"] > 0 and out["people_matched"] == 0:
        out["pck"] = out["auc"] = 0.0
    return out


def evaluate_pose3d_checkpoint(
    checkpoint: str | Path,
    val_json: str | Path,
    val_images: str | Path,
    input_size: tuple[int, int] | None = None,
    batch_size: int = 8,
    max_images: int | None = None,
    ema: bool = False,
    readout_only: bool = False,
    amp: str = "none",
    channels_last: bool = False,
    device: str = "auto",
    workers: int = 0,
    result_path: str | Path | None = None,
    int8_calibration: str | Path | None = None,
    flip: bool = False,
) -> dict[str, float]:
    """A Stage I (+ II) checkpoint alone -> the metrics of `evaluate_people3d` on a MuCo/MuPoTS
    or synthetic val set; under torchrun the images are sharded (metrics identical on every rank;
    the caller ends the process group with `distributed.cleanup`).

    Codec settings and the input size default to the training run's (stored in the checkpoint);
    ema: the EMA weights; readout_only: ignore Stage II (3D from the location maps alone); the
    2D AP is added when val_json is COCO-format and written (rank 0) to result_path if given.
    int8_calibration: a folder of images; Stage I then runs int8 on the CPU, quantized on them
    (`tools/deploy/quantize.py`; Stage II stays fp32, it is a few small linear layers per person).
    flip: flip test (each image's maps averaged with its mirror image's)."""
    obj = read_checkpoint(checkpoint)
    model = load_model(checkpoint)
    if not set(STAGE1_HEADS.values()) & set(model.heads):
        raise ValueError(f"{checkpoint}: not a 3D pose model (heads: {', '.join(model.heads)})")
    if ema:
        if "ema_state_dict" not in obj:
            raise ValueError(f"{checkpoint}: EMA weights asked for, but it holds none")
        model.load_state_dict(obj["ema_state_dict"])
    experiment = obj.get("experiment") or {}
    codec2d, codec3d = make_codecs(experiment.get("codec") or {}, head_of(model.config))
    size = input_size or tuple(obj.get("input_size") or (512, 320))
    dataset = Multi3DDataset(val_json, val_images, size, normalize=False, check_files=False)
    if max_images is not None:
        if max_images < 1:
            raise ValueError(f"max_images must be >= 1, got {max_images}")
        dataset.images = dataset.images[:max_images]
    missing = [i["file_name"] for i in dataset.images if not dataset.image_path(i).is_file()]
    if missing:
        raise DatasetError(f"{len(missing)} images missing from {val_images}: {missing[:3]}")
    info = init_distributed(device)
    model = model.to(info.device).eval()
    lifting = None if readout_only else find_lifting(model)
    if int8_calibration:
        model = quantize_for_eval(model, int8_calibration, size, info.device)
        amp, channels_last = "none", False
    elif channels_last:
        model = model.to(memory_format=torch.channels_last)
    loader = DataLoader(
        dataset,
        batch_size,
        sampler=ShardedSampler(len(dataset), info, False, pad=False),
        num_workers=workers,
        collate_fn=collate_pose3d,
    )

    def prepare(batch: dict) -> dict:
        return {**batch, "images": normalise_images(batch, info.device, channels_last)}

    metrics = evaluate_people3d(
        model,
        loader,
        prepare,
        (codec2d, codec3d),
        info,
        amp_dtype(amp, info.device),
        lifting=lifting,
        coco=coco_or_none(val_json),
        result_path=Path(result_path) if result_path else None,
        match_distance=float((experiment.get("eval") or {}).get("match_distance", 0.5)),
        flip=flip,
    )
    return {**metrics, "images": float(len(dataset))}


def make_codecs(section: dict[str, Any], head: str = "xnect2d") -> tuple[Any, Pose3DCodec]:
    """(2D codec of 2D head `head`, 3D codec) from a config's codec section (pose3d keys;
    absent ones default)."""
    try:
        codec2d = make_codec2d(head, section)
    except ValueError as err:
        raise ValueError(f"codec: {err}") from None
    codec3d = Pose3DCodec(
        stride=codec2d.stride,
        size_divisor=codec2d.size_divisor,
        sigma=float(section.get("sigma3d", codec2d.sigma)),
        unit=float(section.get("unit3d", 1000.0)),
    )
    return codec2d, codec3d


def coco_or_none(path: str | Path) -> Any:
    """The COCO object of a COCO-format keypoint json (2D AP), None for a MuPoTS-style json."""
    try:
        return load_coco_keypoints(path)
    except DatasetError:
        return None
