"""Output files of the demo: the annotated video and the per-frame JSON, written atomically.

Both go to a temporary file beside the target first and are renamed into place at the end, so an
interrupted or failed run never leaves a half-written file under the final name.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import cv2
import numpy as np

VIDEO_CODECS = {".mp4": "mp4v", ".avi": "MJPG", ".mkv": "mp4v", ".mov": "mp4v"}


class VideoOutput:
    """An annotated video written to a temporary file beside `path`, renamed into place by
    `finish()`, so an interrupted run never leaves a half-written file under the final name."""

    def __init__(self, path: str, fps: float) -> None:
        self.path = Path(path)
        suffix = self.path.suffix.lower()
        if suffix not in VIDEO_CODECS:
            raise ValueError(f"--output {path}: unknown video type; use {', '.join(VIDEO_CODECS)}")
        if not self.path.parent.is_dir():
            raise FileNotFoundError(f"--output {path}: folder {self.path.parent} does not exist")
        self.temporary = temporary_beside(self.path, suffix)
        self.fps, self.writer, self.frames = fps, None, 0

    def write(self, image: np.ndarray) -> None:
        if self.writer is None:  # the size is known at the first frame (panel included)
            fourcc = cv2.VideoWriter_fourcc(*VIDEO_CODECS[self.path.suffix.lower()])
            size = (image.shape[1], image.shape[0])
            self.writer = cv2.VideoWriter(str(self.temporary), fourcc, self.fps, size)
            if not self.writer.isOpened():
                raise ValueError(f"--output {self.path}: OpenCV cannot write this video type")
        self.writer.write(image)
        self.frames += 1

    def finish(self, keep: bool = True) -> None:
        if self.writer is not None:
            self.writer.release()
        if keep and self.frames:
            os.replace(self.temporary, self.path)
        else:
            self.temporary.unlink(missing_ok=True)


def temporary_beside(path: Path, suffix: str) -> Path:
    """An empty temporary file in path's folder, with the permissions of a normally created file
    (mkstemp makes it private, which would stick to the renamed result)."""
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=".demo-", suffix=suffix)
    os.close(handle)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(name, 0o666 & ~umask)
    return Path(name)


def write_json(path: str, payload: dict) -> None:
    """Write atomically (temporary file + rename)."""
    target = Path(path)
    temporary = temporary_beside(target, ".json")
    try:
        with open(temporary, "w") as file:
            json.dump(payload, file)
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def person_record(
    person: dict, poses3d: np.ndarray | None, poses3d_relative: np.ndarray | None = None
) -> dict:
    """A tracked person -> its JSON record: id, score, keypoints (K, 3) and, for a 3D model,
    keypoints_3d (camera mm) and keypoints_3d_relative (root-relative mm), 0.1 mm rounded."""
    record = {
        "id": int(person["id"]),
        "score": round(float(person["score"]), 4),
        # float64 before rounding: rounded float32 values print as 0.23999999...
        "keypoints": np.round(np.asarray(person["keypoints"], np.float64), 2).tolist(),
    }
    if poses3d is not None:
        record["keypoints_3d"] = joints_json(poses3d[person["index"]])
    if poses3d_relative is not None:
        record["keypoints_3d_relative"] = joints_json(poses3d_relative[person["index"]])
    return record


def joints_json(joints: np.ndarray) -> list:
    """(J, 3) mm -> nested lists rounded to 0.1 mm; a joint that is not finite (not read out, or
    a person that could not be placed) becomes null: JSON has no NaN."""
    joints = np.round(np.asarray(joints, np.float64), 1)
    return [row.tolist() if np.isfinite(row).all() else None for row in joints]


def check_output_paths(video: str | None, json_path: str | None) -> None:
    """Clear errors for output files that cannot be written, before any work is done."""
    if video and Path(video).suffix.lower() not in VIDEO_CODECS:
        raise ValueError(f"--output {video}: unknown video type; use {', '.join(VIDEO_CODECS)}")
    for flag, path in (("--output", video), ("--json", json_path)):
        if path and not Path(path).parent.is_dir():
            raise FileNotFoundError(f"{flag} {path}: folder {Path(path).parent} does not exist")
