"""Bottom-up 2D multi-person pose: SelecSLS + a 2D head (`model.head`): the XNect Stage I 2D
branch ("xnect2d": heatmaps + PAFs, grouped) or centres + offsets ("centre2d", DEKR-style).

Data: any COCO-format keypoint json + image folder (COCO itself, the built-in synthetic people).
Training samples go through TrainAugment and the codec's encode (heatmaps, PAFs, loss mask);
validation images through EvalResize, and evaluation decodes the outputs into people and scores
them with pycocotools (OKS AP, the best-checkpoint metric). The `codec` section is the codec's
settings: the engine saves the resolved config in every checkpoint, so they land in
checkpoint["experiment"]["codec"], where the demo and the export read them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from selecsls.backbones import canonical_name
from selecsls.backbones.hub import is_published
from selecsls.backbones.selecsls import MAX_WIDTH
from selecsls.datasets.augment import EvalResize, EvalScale, TrainAugment
from selecsls.datasets.coco import IMAGENET_MEAN, IMAGENET_STD, CocoKeypoints, collate_pose
from selecsls.datasets.keypoint_formats import FORMATS
from selecsls.datasets.synthetic_people import DEPTH_RANGE, generate, generator_params
from selecsls.heads import build_model
from selecsls.heads.pose2d.registry import HEADS_2D, get_head2d, make_codec2d
from selecsls.heads.skeletons import SKELETONS, get_skeleton
from selecsls.tools._cli import parse_size as parse_cli_size

from ..config import Field, Schema
from ..distributed import DistInfo
from .base import EvalContext, Task, check_weights
from .pose2d_data import check_data_formats, train_set, val_set
from .pose2d_eval import evaluate_pose2d, load_pose_backbone
from .pose2d_preview import draw_training_inputs

SCHEMA: Schema = {
    "model": {
        "backbone": Field("selecsls60", "str", help="any spelling: SelecSLS60_B, selecsls60b"),
        "weights": Field(
            None, "str", optional=True, help="ImageNet file/published name (backbone part used)"
        ),
        "width": Field(1.0, "float", help="x every backbone block's channels (1: the seed's)"),
        "head": Field(
            "xnect2d",
            "choice",
            tuple(HEADS_2D),
            help="2D head: xnect2d (heatmaps + PAFs) or centre2d (centres + offsets); the codec "
            "and loss follow it (heads.pose2d.registry)",
        ),
    },
    # The codecs' fields (Pose2DCodec, CentreCodec): each takes those it has (stride 8 /
    # size_divisor 16 are fixed by the heads).
    "codec": {
        "stride": Field(8, "int"),
        "size_divisor": Field(16, "int"),
        "sigma": Field(7.0, "float", help="Gaussian sigma in input pixels"),
        "paf_half_width": Field(1.0, "float", help="PAF band half-width in map cells"),
        "peak_threshold": Field(0.1, "float"),
        "paf_samples": Field(10, "int"),
        "paf_min_score": Field(0.05, "float"),
        "paf_min_ratio": Field(0.8, "float"),
        "min_keypoints": Field(3, "int"),
        "max_peaks": Field(64, "int"),
        # centre2d only
        "centre_sigma": Field(7.0, "float", help="centre2d: centre Gaussian sigma, input pixels"),
        "offset_radius": Field(2.0, "float", help="centre2d: cells around a centre regressing"),
        "centre_threshold": Field(0.1, "float", help="centre2d: minimum centre peak"),
        "max_people": Field(30, "int", help="centre2d: most centres decoded per image"),
        "refine_radius": Field(
            3.0, "float", help="centre2d: snap keypoints to heatmap peaks within (cells; 0 off)"
        ),
        "score_fraction": Field(
            0.6, "float", help="person score = mean of its best keypoints, this share"
        ),
        "nms_threshold": Field(0.1, "float", help="centre2d: pose NMS, x person scale (0 off)"),
        "skeleton": Field(
            "coco17",
            "choice",
            tuple(SKELETONS),
            help="keypoints the head predicts and the data annotates (heads.skeletons)",
        ),
    },
    "data": {
        "prepare": Field("none", "choice", ("none", "synthetic"), help="write synthetic people"),
        "format": Field(
            "coco",
            "choice",
            tuple(FORMATS),
            help="annotation format of train/val json (datasets.keypoint_formats)",
        ),
        "mix": Field(
            [],
            "entries",
            help="more training sets [{format, json, images, repeat}] mapped onto codec.skeleton",
        ),
        "root": Field("data/coco", "path", help="the paths below are relative to it"),
        "train_json": Field("annotations/person_keypoints_train2017.json", "path"),
        "train_images": Field("train2017", "path"),
        "val_json": Field("annotations/person_keypoints_val2017.json", "path"),
        "val_images": Field("val2017", "path"),
        "val_max_images": Field(None, "int", optional=True, help="evaluate the first N only"),
        "input_size": Field("368x368", "str", help="W x H of training crops and eval letterbox"),
        "scale": Field([0.6, 1.4], "floats"),
        "rotation": Field(30.0, "float", help="degrees"),
        "hflip": Field(0.5, "float"),
        "colour": Field(True, "bool"),
        # data.prepare=synthetic: sets written to root/train and root/val when absent
        "synthetic_train_images": Field(2000, "int"),
        "synthetic_val_images": Field(200, "int"),
        "synthetic_size": Field("368x368", "str"),
        "synthetic_max_people": Field(5, "int"),
        "synthetic_depth": Field(list(DEPTH_RANGE), "floats", help="[near, far] metres"),
        "synthetic_seed": Field(0, "int", help="train seed; val uses seed + 1"),
    },
    "loss": {
        "paf_weight": Field(1.0, "float"),
        "heatmap_fg_weight": Field(
            0.0, "float", help="heatmap cells weigh 1 + this x closeness to a keypoint (0: plain)"
        ),
        "paf_fg_weight": Field(
            0.0, "float", help="PAF cells weigh 1 + this x their target's length (0: plain)"
        ),
        "offset_weight": Field(1.0, "float", help="centre2d: x the offsets' smooth L1"),
    },
    "eval": {
        "previews": Field(4, "int", help="val images drawn into TensorBoard per evaluation"),
        "flip": Field(False, "bool", help="flip test: average maps with the mirror image's"),
        "geometry": Field(
            "letterbox",
            "choice",
            ("letterbox", "short_side", "height"),
            help="letterbox into data.input_size, or scale the short side / the height to "
            "eval.size (aspect kept, padded to 16: the bottom-up references' geometry)",
        ),
        "size": Field(
            None, "int", optional=True, help="short side / height (default: input height)"
        ),
    },
}


def written_params(json_path: Path) -> dict | None:
    """The generator arguments a synthetic set's json was written with; None when there is no
    json, {} for one from before they were recorded (or unreadable): then it is rewritten."""
    if not json_path.is_file():
        return None
    try:
        with open(json_path) as file:
            return json.load(file).get("info", {}).get("generator", {})
    except (OSError, ValueError, AttributeError):
        return {}


def train_augment(
    data: dict, input_size: tuple[int, int], seed: int, skeleton: str = "coco17"
) -> TrainAugment:
    """The 2D training augmentation from a config's data section (pose2d, pose3d's COCO part);
    the flip swaps left and right keypoints of `skeleton`'s annotation order."""
    return TrainAugment(
        input_size,
        get_skeleton(skeleton).flip,
        scale=tuple(data["scale"]),
        rotation=data["rotation"],
        flip_probability=data["hflip"],
        colour=data["colour"],
        seed=seed,
    )


def eval_augment(section: dict[str, Any], input_size: tuple[int, int]) -> EvalResize:
    """The val images' geometry from a config's eval section: a letterbox into `input_size`
    (the demo's and the export's), or the references' per-image scaling (`EvalScale`)."""
    geometry = section.get("geometry", "letterbox")
    if geometry == "letterbox":
        return EvalResize(input_size)
    size = section.get("size") or input_size[1]
    side = "short" if geometry == "short_side" else "height"
    try:
        return EvalScale(int(size), 16, side)
    except ValueError as err:
        raise ValueError(f"eval.size: {err}") from None


def pose_model_config(model: dict[str, Any], head: str, skeleton: str = "coco17") -> dict[str, Any]:
    """build_model's config from a pose config's model section: backbone, width, one head
    predicting `skeleton` (recorded in the head's config, so the checkpoint carries it)."""
    # COCO-17 models keep the config they had before skeletons were configurable
    head_config = {} if skeleton == "coco17" else {"skeleton": skeleton}
    config: dict[str, Any] = {
        "backbone": canonical_name(model["backbone"]),
        "heads": {head: head_config},
    }
    if model["width"] != 1:  # checkpoints of the seed's widths keep their earlier config
        config["backbone_width"] = float(model["width"])
    return config


def check_model_section(model: dict[str, Any]) -> None:
    """ValueError naming the key: an unknown backbone, a width out of range, or published
    ImageNet weights asked for a narrowed backbone (they exist for width 1 only)."""
    try:
        canonical_name(model["backbone"])
    except ValueError as err:
        raise ValueError(f"model.backbone: {err}") from None
    width = model["width"]
    if not 0 < width <= MAX_WIDTH:
        raise ValueError(f"model.width must be in (0, {MAX_WIDTH:g}], got {width:g}")
    if model["weights"] and width != 1 and is_published(model["weights"]):
        raise ValueError(
            f"model.weights={model['weights']}: published weights are for model.width 1, "
            f"not {width}"
        )


def parse_size(text: str, key: str) -> tuple[int, int]:
    """'368x368' (W x H) -> (368, 368); ValueError naming the config key."""
    return parse_cli_size(text, key, minimum=32)


class Pose2DTask(Task):
    name = "pose2d"
    schema = SCHEMA
    best_metric = "AP"
    best_mode = "max"

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__(config)
        self.head = config.get("model", {}).get("head", "xnect2d")
        self.codec = make_codec(config["codec"], self.head)
        if config.get("data", {}).get("format") == "mpii":
            self.best_metric = "PCKh"  # MPII's own metric picks best.pt
        self.input_size = parse_size(config["data"]["input_size"], "data.input_size")
        self.val_set: CocoKeypoints | None = None

    def path(self, key: str) -> Path:
        data = self.config["data"]
        return Path(data["root"]) / data[key]

    def check(self) -> None:
        data, model = self.config["data"], self.config["model"]
        check_model_section(model)
        if self.codec.stride != 8 or self.codec.size_divisor != 16:
            raise ValueError(
                f"codec.stride must be 8 and codec.size_divisor 16: the {self.head} head predicts "
                f"stride-8 maps from the stride-16 backbone (got {self.codec.stride}, "
                f"{self.codec.size_divisor})"
            )
        for key in ("paf_weight", "heatmap_fg_weight", "paf_fg_weight", "offset_weight"):
            if self.config["loss"][key] < 0:
                raise ValueError(f"loss.{key} must be >= 0, got {self.config['loss'][key]}")
        check_weights(model["weights"])
        if data["prepare"] == "synthetic":
            parse_size(data["synthetic_size"], "data.synthetic_size")
            if self.path("train_json").parent == self.path("val_json").parent:
                raise ValueError(
                    "data.prepare=synthetic writes each split's images beside its json: "
                    "data.train_json and data.val_json need different folders (e.g. "
                    f"train/annotations.json, val/annotations.json), got {data['train_json']} "
                    f"and {data['val_json']}"
                )
            near, far = data["synthetic_depth"] if len(data["synthetic_depth"]) == 2 else (0, 0)
            if not 0.5 <= near <= far:
                raise ValueError(
                    "data.synthetic_depth must be [near, far] metres, 0.5 <= near <= far: "
                    f"{data['synthetic_depth']}"
                )
        else:
            for key, kind in (("train_json", "file"), ("train_images", "folder")):
                for split_key in (key, key.replace("train", "val")):
                    found = self.path(split_key)
                    if not (found.is_file() if kind == "file" else found.is_dir()):
                        raise FileNotFoundError(
                            f"data.{split_key}: {kind} {found} does not exist "
                            f"(data.root = {data['root']})"
                        )
        check_data_formats(data, self.codec)
        eval_augment(self.config["eval"], self.input_size)  # ValueError naming eval.size
        low, high = data["scale"] if len(data["scale"]) == 2 else (1, 0)
        if not 0 < low <= high:
            raise ValueError(f"data.scale must be [low, high], 0 < low <= high: {data['scale']}")
        if not 0 <= data["hflip"] <= 1:
            raise ValueError(f"data.hflip must be a probability, got {data['hflip']}")

    def prepare_data(self) -> None:
        data = self.config["data"]
        if data["prepare"] != "synthetic":
            return
        size = parse_size(data["synthetic_size"], "data.synthetic_size")
        depth = tuple(data["synthetic_depth"])
        for split, offset in (("train", 0), ("val", 1)):
            count, seed = data[f"synthetic_{split}_images"], data["synthetic_seed"] + offset
            json_path = self.path(f"{split}_json")
            wanted = generator_params(count, seed, size, data["synthetic_max_people"], depth)
            # the json is written last and atomically: present means complete
            found = written_params(json_path)
            if found == wanted:
                continue
            verb = "rewriting" if found is not None else "writing"
            print(f"data.prepare: {verb} {count} synthetic {split} images in {json_path.parent}")
            generate(
                json_path.parent,
                count,
                seed=seed,
                size=size,
                max_people=data["synthetic_max_people"],
                json_name=json_path.name,
                depth_range=depth,
            )

    def build_model(self) -> nn.Module:
        model = build_model(pose_model_config(self.config["model"], self.head, self.codec.skeleton))
        if self.config["model"]["weights"]:
            load_pose_backbone(model, self.config["model"]["weights"])
        return model

    def build_datasets(self) -> tuple[Dataset, CocoKeypoints]:
        data = self.config["data"]
        augment = train_augment(
            data, self.input_size, self.config["run"]["seed"], self.codec.skeleton
        )
        train = train_set(data, self.codec, self.input_size, augment)
        val_geometry = eval_augment(self.config.get("eval", {}), self.input_size)
        val = val_set(data, self.codec, self.input_size, val_geometry)
        if data["val_max_images"]:
            val.image_ids = val.image_ids[: data["val_max_images"]]
        self.val_set = val
        return train, val

    def checkpoint_extra(self) -> dict[str, Any]:
        # The codec also lives in checkpoint["experiment"]["codec"] (the whole resolved config);
        # the input size is what the demo should letterbox to by default.
        return {"input_size": list(self.input_size)}

    def collate(self, items: list) -> dict[str, Any]:
        return collate_pose(items)

    def to_device(
        self, batch: dict[str, Any], device: torch.device, train: bool, channels_last: bool
    ) -> dict[str, Any]:
        images = batch["image"].to(device, non_blocking=True).float().div_(255)
        mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)
        images = (images - mean) / std
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        out = {**batch, "images": images}
        for key in (*self.codec.target_keys, "heatmap_mask", "paf_mask"):
            if key in batch:
                out[key] = batch[key].to(device, non_blocking=True)
        return out

    def batch_size(self, batch: dict[str, Any]) -> int:
        return int(batch["images"].shape[0])

    def losses(self, model: nn.Module, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        outputs = model(batch["images"])
        head = get_head2d(self.head)
        return head.loss(outputs, batch, **head.loss_options(self.config["loss"]))

    def evaluate(
        self,
        model: nn.Module,
        loader: Any,
        info: DistInfo,
        amp_dtype: torch.dtype | None,
        channels_last: bool,
        ctx: EvalContext | None = None,
    ) -> dict[str, float]:
        return evaluate_pose2d(self, model, loader, info, amp_dtype, channels_last, ctx)

    def preview_images(self, batch: dict[str, Any]) -> torch.Tensor:
        """Training inputs with their augmented ground-truth skeletons drawn."""
        skeleton = self.codec.keypoint_skeleton
        return draw_training_inputs(batch["image"][:8], batch["keypoints"][:8], skeleton)


def make_codec(section: dict[str, Any], head: str = "xnect2d") -> Any:
    """The codec of 2D head `head` from the config's codec section (each codec takes the keys
    it has: `heads.pose2d.registry.make_codec2d`)."""
    try:
        return make_codec2d(head, section)
    except ValueError as err:
        raise ValueError(f"codec: {err}") from None
