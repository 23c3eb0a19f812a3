"""Tasks by name: the `task:` key of a config picks one (a plain dict; see base.Task)."""

from __future__ import annotations

from .base import Task
from .classification import ClassificationTask
from .pose2d import Pose2DTask

TASKS: dict[str, type[Task]] = {
    "classification": ClassificationTask,
    "pose2d": Pose2DTask,
}

__all__ = ["TASKS", "ClassificationTask", "Task"]
