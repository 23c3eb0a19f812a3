"""XNect Stage I: the 2D branch and the 3D branch (location maps) trained together ("pose3d").

Data: a MuCo-3DHP / MuPoTS-format json + images (the built-in synthetic people are written in a
compatible format by data.prepare=synthetic), optionally mixed with a 2D-only COCO-format set
(data.coco_json; its people train only the 2D branch). Training samples go through `Augment3D`
(a similarity the camera and 3D joints follow exactly), the 2D codec's encode and, in `collate`,
the 3D codec's location-map targets plus per-keypoint 2D masks (`heads.pose2d.loss.keypoint_masks`:
people made from 3D joints have no face keypoints, which must not be trained as background).
Loss: the pose2d loss + loss.locmap_weight x the masked location-map L2 (`codec3d.locmap_loss`;
people without 3D labels have zero weight there).
Evaluation (`pose3d_eval`): 3D metrics on the val split (MPJPE, PA-MPJPE, 3DPCK@150mm, AUC,
matched and all people; "gt2d_*": the maps read at the ground-truth 2D joints, i.e. the 3D branch
alone) and the 2D OKS AP when the val json is COCO-format; the best checkpoint is chosen by
eval.best (default 3DPCK of matched people, "pck").
Initialisation (model.weights): a pose2d checkpoint (backbone + 2D branch), a Stage I checkpoint,
or an ImageNet file / published name (backbone only).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
from torch import nn

from selecsls.datasets.muco import Multi3DDataset
from selecsls.heads import build_model
from selecsls.heads.pose2d.registry import STAGE1_HEADS, get_head2d
from selecsls.heads.pose3d.codec import locmap_loss

from ..config import Field, Schema, merge_schemas
from ..distributed import DistInfo
from .base import EvalContext
from .pose2d import SCHEMA as POSE2D_SCHEMA
from .pose2d import Pose2DTask, pose_model_config
from .pose2d_preview import add_previews, preview_count
from .pose3d_data import (
    TARGET_KEYS,
    collate_stage1,
    data_paths_exist,
    load_stage1_weights,
    train_datasets,
)
from .pose3d_eval import (
    RESULT_FILE,
    coco_or_none,
    evaluate_people3d,
    make_codecs,
    normalise_images,
)
from .pose3d_preview import Pose3DPreviews

BEST_CHOICES = ("pck", "pck_all", "auc", "auc_all", "AP")

_EXTRA: Schema = {
    "model": {
        "weights": Field(
            None,
            "str",
            optional=True,
            help="pose2d checkpoint, Stage I checkpoint, or ImageNet file/published name",
        ),
    },
    "codec": {
        "sigma3d": Field(7.0, "float", help="location-map supervision sigma, input pixels"),
        "unit3d": Field(1000.0, "float", help="mm per location-map unit (1000: metres)"),
    },
    "data": {
        "shift": Field(0.15, "float", help="random shift, fraction of the input size"),
        "train_repeat": Field(1, "int", help="copies of the 3D train set per epoch"),
        "coco_json": Field(None, "path", optional=True, help="2D-only COCO-format json to mix in"),
        "coco_images": Field(None, "path", optional=True),
        "coco_repeat": Field(1, "int", help="copies of the 2D-only set per epoch"),
    },
    "loss": {
        "locmap_weight": Field(1000.0, "float", help="x the location-map loss (metres^2)"),
    },
    "eval": {
        "best": Field("pck", "choice", BEST_CHOICES, help="metric picking best.pt"),
        "match_distance": Field(0.5, "float", help="2D matching limit, x GT box diagonal"),
    },
}


def pose3d_schema() -> Schema:
    """pose2d's sections plus the 3D keys; eval.previews draws the 3D poses too (pose3d_preview)."""
    return merge_schemas(copy.deepcopy(POSE2D_SCHEMA), _EXTRA)


class Pose3DTask(Pose2DTask):
    name = "pose3d"
    schema = pose3d_schema()
    best_metric = "pck"
    best_mode = "max"

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__(config)
        self.codec, self.codec3d = make_codecs(config["codec"], self.head)
        self.best_metric = config["eval"].get("best", "pck")
        self.coco: Any = None

    def check(self) -> None:
        super().check()
        data, loss = self.config["data"], self.config["loss"]
        if data["coco_json"] or data["coco_images"]:
            if not (data["coco_json"] and data["coco_images"]):
                raise ValueError("data.coco_json and data.coco_images go together (2D-only mix)")
            data_paths_exist(self, [("coco_json", "file"), ("coco_images", "folder")])
        for key in ("train_repeat", "coco_repeat"):
            if data[key] < 1:
                raise ValueError(f"data.{key} must be >= 1, got {data[key]}")
        if loss["locmap_weight"] < 0:
            raise ValueError(f"loss.locmap_weight must be >= 0, got {loss['locmap_weight']}")
        data = self.config["data"]
        if data["format"] != "coco" or data["mix"]:
            raise ValueError(
                "data.format and data.mix belong to the pose2d task; the pose3d task mixes 2D "
                "data through data.coco_json / data.coco_images"
            )
        if self.codec.skeleton != "coco17":
            raise ValueError(
                f"codec.skeleton={self.codec.skeleton}: the 3D read-out and Stage II place the "
                "21 3D joints at OpenPose-18 keypoints; the pose3d task needs codec.skeleton=coco17"
            )
        if self.codec3d.sigma <= 0 or self.codec3d.unit <= 0:
            raise ValueError("codec.sigma3d and codec.unit3d must be positive")

    def build_model(self) -> nn.Module:
        model = build_model(pose_model_config(self.config["model"], STAGE1_HEADS[self.head]))
        if self.config["model"]["weights"]:
            load_stage1_weights(model, self.config["model"]["weights"])
        return model

    def val_dataset(self) -> Multi3DDataset:
        data = self.config["data"]
        val = Multi3DDataset(
            self.path("val_json"), self.path("val_images"), self.input_size, normalize=False
        )
        if data["val_max_images"]:
            val.images = val.images[: data["val_max_images"]]
        self.val_set = val
        self.coco = coco_or_none(self.path("val_json"))
        return val

    def build_datasets(self) -> tuple[Any, Multi3DDataset]:
        return train_datasets(self), self.val_dataset()

    def collate(self, items: list) -> dict[str, Any]:
        return collate_stage1(items, self.codec, self.codec3d)

    def to_device(
        self, batch: dict[str, Any], device: torch.device, train: bool, channels_last: bool
    ) -> dict[str, Any]:
        out = {**batch, "images": normalise_images(batch, device, channels_last)}
        for key in TARGET_KEYS:
            if key in batch:
                out[key] = batch[key].to(device, non_blocking=True)
        return out

    def losses(self, model: nn.Module, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        outputs = model(batch["images"])
        loss = self.config["loss"]
        head = get_head2d(self.head)
        losses = head.loss(outputs, batch, **head.loss_options(loss))
        locmap = locmap_loss(outputs["locmaps"].float(), batch["locmaps"], batch["locmap_weights"])
        losses["locmap_loss"] = locmap
        losses["loss"] = losses["loss"] + loss["locmap_weight"] * locmap
        return losses

    def evaluate(
        self,
        model: nn.Module,
        loader: Any,
        info: DistInfo,
        amp_dtype: torch.dtype | None,
        channels_last: bool,
        ctx: EvalContext | None = None,
    ) -> dict[str, float]:
        count = preview_count(self.config, info, ctx)
        previews = Pose3DPreviews(count) if count else None
        metrics = evaluate_people3d(
            model,
            loader,
            lambda batch: self.to_device(batch, info.device, False, channels_last),
            (self.codec, self.codec3d),
            info,
            amp_dtype,
            lifting=self.lifting_net(model),
            coco=self.coco,
            result_path=Path(self.config["run"]["out_dir"]) / RESULT_FILE,
            match_distance=self.config["eval"]["match_distance"],
            previews=previews,
            flip=self.config["eval"]["flip"],
        )
        if previews is not None and ctx is not None:
            add_previews(ctx.writer, f"{ctx.tag}/preview", previews.panels, ctx.epoch)
        return metrics

    def lifting_net(self, model: nn.Module) -> Any:
        """Stage II applied in evaluation (none in Stage I training)."""
        return None
