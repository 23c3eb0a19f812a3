"""Writes the tiny MuCo/MuPoTS-format fixture beside this file (run once; outputs are committed).

Two 64x48 images in a sub-folder (as MuCo's file names have one): image 1 holds two 21-joint
people (MuCo style, with keypoints_img), image 2 one 17-joint person (MuPoTS style, with
keypoints_vis, one joint marked outside, and no keypoints_img: the loader projects it).
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

HERE = Path(__file__).resolve().parent
# A standing person, pelvis-relative, camera axes (x right, y down, z forward), mm.
BODY = np.array([
    [0, -750, 0], [0, -500, 0], [-180, -480, 0], [-200, -200, 0], [-210, 50, 0],
    [180, -480, 0], [200, -200, 0], [210, 50, 0], [-100, 0, 0], [-110, 420, 0],
    [-110, 830, 0], [100, 0, 0], [110, 420, 0], [110, 830, 0], [0, 0, 0], [0, -250, 0],
    [0, -620, 0], [-215, 140, 0], [215, 140, 0], [-110, 870, 120], [110, 870, 120],
], np.float64)  # fmt: skip


def project(points, f, c):
    return points[:, :2] / points[:, 2:] * np.asarray(f) + np.asarray(c)


def main() -> None:
    (HERE / "images" / "seq01").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name in ("img_000001.jpg", "img_000002.jpg"):
        image = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
        cv2.imwrite(str(HERE / "images" / "seq01" / name), image)
    f1, c1 = [40.0, 40.0], [32.0, 24.0]
    f2, c2 = [50.0, 52.0], [31.5, 23.5]
    a = BODY + [-400, 0, 4000]
    b = BODY + [600, 100, 5000]
    b[:, 2] += np.linspace(-50, 50, 21)
    c = (BODY + [100, 50, 3500])[:17]
    annotations = [
        {"id": 1, "image_id": 1, "keypoints_cam": a.round(1).tolist(),
         "keypoints_img": project(a, f1, c1).round(2).tolist(), "bbox": [20, 10, 20, 30]},
        {"id": 2, "image_id": 1, "keypoints_cam": b.round(1).tolist(),
         "keypoints_img": project(b, f1, c1).round(2).tolist(), "bbox": [35, 12, 14, 20]},
        {"id": 3, "image_id": 2, "keypoints_cam": c.round(1).tolist(),
         "keypoints_vis": [1] * 10 + [0] + [1] * 6, "is_valid": 1, "bbox": [20, 8, 24, 36]},
    ]  # fmt: skip
    data = {
        "images": [
            {
                "id": 1,
                "file_name": "seq01/img_000001.jpg",
                "width": 64,
                "height": 48,
                "f": f1,
                "c": c1,
            },
            {
                "id": 2,
                "file_name": "seq01/img_000002.jpg",
                "width": 64,
                "height": 48,
                "f": f2,
                "c": c2,
            },
        ],  # fmt: skip
        "annotations": annotations,
    }
    (HERE / "annotations.json").write_text(json.dumps(data, indent=1))


if __name__ == "__main__":
    main()
