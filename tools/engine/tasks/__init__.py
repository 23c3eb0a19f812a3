"""Tasks by name: the `task:` key of a config picks one (a plain dict; see base.Task)."""

from __future__ import annotations

from .base import Task
from .classification import ClassificationTask
from .lifting import LiftingTask
from .pose2d import Pose2DTask
from .pose3d import Pose3DTask

TASKS: dict[str, type[Task]] = {
    "classification": ClassificationTask,
    "pose2d": Pose2DTask,
    "pose3d": Pose3DTask,  # Stage I: 2D + 3D branches
    "lifting": LiftingTask,  # Stage II on a frozen Stage I
}

__all__ = ["TASKS", "ClassificationTask", "Task"]
