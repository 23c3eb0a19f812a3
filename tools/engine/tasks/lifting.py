"""XNect Stage II ("lifting"): the per-person LiftingNet trained on top of a frozen Stage I.

The model is a Stage I checkpoint's network (model.stage1, with either 2D head: "xnect3d" or
"centre3d", whose codec then decodes its people; its weights frozen) plus a "lifting" head
holding the LiftingNet, so every checkpoint is a complete Stage I + II model:
`heads.load_model(path)` rebuilds both and
`heads.pose3d.people.predict_people3d(..., lifting=...)` (or
`heads.pose3d.lifting.find_lifting(model)`) applies Stage II to every detected person.

Training inputs (data.inputs):
- ground_truth: each 3D-labelled person of data.train_json (no images are read), turned by a
  random yaw about its pelvis (re-projected with its camera) and simulated Stage I outputs with
  noise (`lifting.inputs_from_ground_truth`); fast, and independent of Stage I's quality;
- stage1: the frozen Stage I's own outputs on augmented training images, its decoded people
  matched to the ground truth (`pose3d.stage2_training_pairs`).
Evaluation: "lift_*" metrics (MPJPE, PA-MPJPE, 3DPCK, AUC) of the LiftingNet on the val split's
people from ground-truth-derived inputs (fixed noise: held-out poses), and, with a Stage I,
the full pipeline's metrics (Stage I detections lifted by Stage II; "readout_*" = Stage I alone).
best.pt: by eval.best (auto: "pck" with a Stage I, else "lift_pck"). One process only (no
torchrun).
"""

from __future__ import annotations

import copy
import os
from typing import Any

import torch
from torch import nn
from torch.utils.data import default_collate

from selecsls.backbones import canonical_name
from selecsls.datasets.mix3d import Multi3DPeople
from selecsls.datasets.muco import Multi3DDataset
from selecsls.heads import build_model
from selecsls.heads.pose2d.registry import STAGE1_HEADS, head_of
from selecsls.heads.pose3d.lifting import find_lifting, lifting_loss
from selecsls.heads.weights import read_model_file

from ..config import Field, Schema
from ..distributed import DistInfo
from .base import EvalContext
from .lifting_data import evaluate_lifting, ground_truth_batch, stage1_batch
from .pose2d import parse_size
from .pose3d import BEST_CHOICES, Pose3DTask, pose3d_schema
from .pose3d_data import data_paths_exist, load_stage1_weights, multi3d_train_set
from .pose3d_eval import make_codecs

_STAGE1_ONLY = ("coco_json", "coco_images", "coco_repeat", "train_repeat")


def lifting_schema() -> Schema:
    base = pose3d_schema()
    data = {k: f for k, f in base["data"].items() if k not in _STAGE1_ONLY}
    data.update({
        "inputs": Field("ground_truth", "choice", ("ground_truth", "stage1")),
        "repeats": Field(4, "int", help="ground_truth: copies of each person per epoch"),
        "yaw": Field(180.0, "float", help="ground_truth: random turn about the pelvis, degrees"),
        "noise2d": Field(0.02, "float", help="x the person's 2D size"),
        "noise_near": Field(0.05, "float", help="m, read-out noise where Stage I supervises"),
        "noise_far": Field(0.25, "float", help="m, read-out noise elsewhere"),
        "drop": Field(0.1, "float", help="probability that a 2D joint is undetected"),
    })  # fmt: skip
    return {
        "model": {
            "backbone": base["model"]["backbone"],
            "stage1": Field(None, "str", optional=True, help="Stage I checkpoint (frozen)"),
        },
        "codec": base["codec"],
        "data": data,
        "loss": {"aux_weight": Field(0.5, "float", help="deep supervision weight")},
        "eval": {
            "best": Field(
                "auto",
                "choice",
                ("auto", "lift_pck", *BEST_CHOICES),
                help="best.pt metric; auto: pck with model.stage1, else lift_pck",
            ),
            "match_distance": base["eval"]["match_distance"],
            "previews": base["eval"]["previews"],  # with model.stage1 (lifted poses drawn)
            "flip": base["eval"]["flip"],
        },
    }


class LiftingTask(Pose3DTask):
    name = "lifting"
    schema = lifting_schema()
    best_metric = "lift_pck"

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__(config)
        self.has_stage1 = bool(config["model"]["stage1"])
        stage1 = config["model"]["stage1"]
        self._stage1_file: tuple | None = None  # (state, config), read once for build_model
        if stage1 and os.path.isfile(stage1):  # decode with the Stage I's own 2D head's codec
            self._stage1_file = read_model_file(stage1)
            self.head = head_of(self._stage1_file[1])
            self.codec, self.codec3d = make_codecs(config["codec"], self.head)
        best = config["eval"]["best"]
        if best == "auto":
            best = "pck" if self.has_stage1 else "lift_pck"
        self.best_metric = best

    def check(self) -> None:
        data, model, run = self.config["data"], self.config["model"], self.config["run"]
        try:
            canonical_name(model["backbone"])
        except ValueError as err:
            raise ValueError(f"model.backbone: {err}") from None
        if model["stage1"] and not os.path.isfile(model["stage1"]):
            raise FileNotFoundError(f"model.stage1: {model['stage1']} is not a file")
        if data["inputs"] == "stage1" and not model["stage1"]:
            raise ValueError("data.inputs=stage1 needs model.stage1 (a Stage I checkpoint)")
        if data["prepare"] == "synthetic":
            parse_size(data["synthetic_size"], "data.synthetic_size")
        else:
            paths = [("train_json", "file"), ("val_json", "file"), ("val_images", "folder")]
            if data["inputs"] == "stage1":
                paths.append(("train_images", "folder"))
            data_paths_exist(self, paths)
        if data["repeats"] < 1 or not 0 <= data["drop"] < 1:
            raise ValueError("data.repeats must be >= 1 and data.drop in [0, 1)")
        if int(os.environ.get("WORLD_SIZE", "1")) > 1 or run["compile"]:
            raise ValueError("task lifting trains in one process: no torchrun, run.compile=false")
        if self.best_metric != "lift_pck" and not model["stage1"]:
            raise ValueError(
                f"eval.best={self.best_metric} needs model.stage1 (without Stage I only the "
                "lift_* metrics exist)"
            )
        if self.config["eval"]["bn_recalibrate"]:
            raise ValueError("eval.bn_recalibrate must be 0 for task lifting")

    def build_model(self) -> nn.Module:
        stage1 = self.config["model"]["stage1"]
        if stage1:
            state, config = self._stage1_file or read_model_file(stage1)
            self._stage1_file = None  # the model holds the weights from here on
            heads = (config or {}).get("heads") or {}
            name = next((h for h in STAGE1_HEADS.values() if h in heads), None)
            if name is None:
                raise ValueError(
                    f"model.stage1: {stage1} is not a Stage I checkpoint (heads: "
                    f"{', '.join(heads) or 'none'}; one of {', '.join(STAGE1_HEADS.values())})"
                )
            config = copy.deepcopy(config)
            config["heads"] = {name: config["heads"][name], "lifting": {}}
        else:  # no Stage I: only the lift_* metrics mean anything
            backbone = canonical_name(self.config["model"]["backbone"])
            config = {"backbone": backbone, "heads": {"xnect3d": {}, "lifting": {}}}
        model = build_model(config)
        if stage1:
            load_stage1_weights(model, stage1, key="model.stage1", state=state)
        for name, parameter in model.named_parameters():
            parameter.requires_grad = name.startswith("heads.lifting.")
        return model

    def build_datasets(self) -> tuple[Any, Multi3DDataset]:
        data = self.config["data"]
        if data["inputs"] == "ground_truth":
            train: Any = Multi3DPeople(self.path("train_json"), data["repeats"])
        else:
            train = multi3d_train_set(self)
        return train, self.val_dataset()

    def collate(self, items: list) -> dict[str, Any]:
        if "image" in items[0]:
            return super().collate(items)  # image batches: no targets to add
        return ground_truth_batch(default_collate(items), self.config["data"])

    def to_device(
        self, batch: dict[str, Any], device: torch.device, train: bool, channels_last: bool
    ) -> dict[str, Any]:
        if "inputs" in batch:
            return {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        return super().to_device(batch, device, train, channels_last)

    def batch_size(self, batch: dict[str, Any]) -> int:
        return int((batch["inputs"] if "inputs" in batch else batch["images"]).shape[0])

    def losses(self, model: nn.Module, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        net = find_lifting(model)
        if "inputs" not in batch:
            batch = stage1_batch(model, batch, self.codec, self.codec3d)
        if batch["inputs"].shape[0] < 2:  # BatchNorm needs two people; no gradient this time
            zero = sum(p.sum() for p in net.parameters()) * 0.0
            return {"loss": zero, **{f"{k}_loss": zero.detach() for k in ("pose", "scale", "aux")}}
        outputs = {k: v.float() for k, v in net(batch["inputs"]).items()}
        parts = lifting_loss(outputs, batch, self.config["loss"]["aux_weight"])
        return {"loss": parts["total"], **{f"{k}_loss": parts[k] for k in ("pose", "scale", "aux")}}

    def evaluate(
        self,
        model: nn.Module,
        loader: Any,
        info: DistInfo,
        amp_dtype: torch.dtype | None,
        channels_last: bool,
        ctx: EvalContext | None = None,
    ) -> dict[str, float]:
        metrics = self.evaluate_ground_truth_inputs(find_lifting(model), loader)
        if self.has_stage1:  # the full pipeline, with previews of the lifted poses
            metrics.update(super().evaluate(model, loader, info, amp_dtype, channels_last, ctx))
            note = below_readout_note(metrics, self.config["model"]["stage1"])
            if note and info.is_main:
                print(note)
        return metrics

    def lifting_net(self, model: nn.Module) -> Any:
        """Stage II applied to every detected person in the full-pipeline evaluation."""
        return find_lifting(model)

    def evaluate_ground_truth_inputs(self, net: nn.Module, loader: Any) -> dict[str, float]:
        """lift_*: Stage II alone on the val people (see `lifting_data.evaluate_lifting`)."""
        return evaluate_lifting(net, loader, self.config["data"], self.config["run"]["seed"])

    def preview_images(self, batch: dict[str, Any]) -> torch.Tensor | None:
        return super().preview_images(batch) if "image" in batch else None


def below_readout_note(metrics: dict[str, float], stage1: str) -> str | None:
    """A note when Stage II scores below its own Stage I's read-out on val (3DPCK over all
    people), as on the 3D quickstart: the Stage I checkpoint alone then gives better 3D poses."""
    lifted, readout = metrics.get("pck_all"), metrics.get("readout_pck_all")
    if lifted is None or readout is None or lifted >= readout:
        return None
    return (
        f"note: Stage II's 3DPCK ({lifted:.1f}) is below Stage I's own read-out ({readout:.1f}) "
        f"on val; the demo and tools.eval give the read-out with the Stage I checkpoint "
        f"{stage1} (or eval --readout-only). docs/pose3d.md, 'Where the gap is'"
    )
