"""The Blender check of the BVH files: its expected geometry and its errors here; the import in
Blender itself runs where SELECSLS_BLENDER_PYTHON names a python with `bpy` (docs/motion.md)."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

from selecsls.tools.evaluation import blender_bvh


def test_expected_tpose_is_upright_and_unmirrored_in_blender_axes():
    axes = blender_bvh.tpose_axes(blender_bvh.to_blender(blender_bvh.facing_camera_tpose())[0])
    assert axes["head_up_z"] > 0.99 and axes["feet_forward_minus_y"] > 0.9
    assert axes["left_hand_x_m"] > 0.5 and axes["right_hand_x_m"] < -0.5
    assert np.linalg.det(blender_bvh.BVH_TO_BLENDER) == pytest.approx(1.0)  # no mirror


def test_files_are_written_and_a_python_without_bpy_is_named(tmp_path):
    expected = blender_bvh.write_files(tmp_path)
    assert set(expected) == {"person_1.bvh", "person_2.bvh", "tpose/person_1.bvh"}
    for name, joints in expected.items():
        assert (tmp_path / name).is_file() and joints.shape[1:] == (21, 3)
    with pytest.raises(RuntimeError, match="Blender import of person_1.bvh failed"):
        blender_bvh.import_in_blender(sys.executable, tmp_path / "person_1.bvh")


BLENDER = os.environ.get("SELECSLS_BLENDER_PYTHON")


@pytest.mark.skipif(not BLENDER, reason="SELECSLS_BLENDER_PYTHON (a python with bpy) not set")
def test_blender_imports_the_files_as_fitted(capsys):
    assert blender_bvh.main(["--blender-python", BLENDER]) == 0
    assert "all checks passed" in capsys.readouterr().out
