"""Heads that read the backbone's declared feature maps, and the model that joins them."""

from .classification import HEAD_TABLES, ClassificationHead
from .model import HEADS, Model, build_classifier, build_model, classifier_config
from .weights import (
    convert_keys,
    detect_format,
    export_state_dict,
    load_model,
    load_weights,
    save_model,
)

__all__ = [
    "HEADS",
    "HEAD_TABLES",
    "ClassificationHead",
    "Model",
    "build_classifier",
    "build_model",
    "classifier_config",
    "convert_keys",
    "detect_format",
    "export_state_dict",
    "load_model",
    "load_weights",
    "save_model",
]
