"""Demo parts: One-Euro filter, tracker, frame sources (skips, EOF, camera loss), drawing."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from selecsls.datasets.synthetic_people import render_image
from selecsls.heads.skeletons import JOINTS21_NAMES
from selecsls.tools.realtime.sources import ImageFolder, ReadAhead, VideoCapture, open_source
from selecsls.tools.realtime.tracking import OneEuroFilter, Tracker, similarity_matrix
from selecsls.tools.visualization.draw import (
    colour_of,
    compose,
    draw_fps,
    draw_person,
    draw_pose3d_panel,
    fitted_scale,
)

# ----------------------------------------------------------------------------- One-Euro


def test_one_euro_smooths_noise_and_follows_motion():
    rng = np.random.default_rng(0)
    times = np.arange(300) / 30.0
    noisy = 100 + rng.normal(0, 2.0, (300, 1))
    still = OneEuroFilter(min_cutoff=1.0, beta=0.0)
    out = np.array([still(x, t) for x, t in zip(noisy, times)])
    assert out[30:].std() < 0.4 * noisy[30:].std()  # jitter of a still point is cut

    ramp = 100 + 300 * times[:, None]  # 300 px/s
    lag = {}
    for beta in (0.0, 0.05):
        f = OneEuroFilter(min_cutoff=1.0, beta=beta)
        out = np.array([f(x, t) for x, t in zip(ramp, times)])
        lag[beta] = float(np.abs(out[-30:] - ramp[-30:]).mean())
    assert lag[0.05] < 0.3 * lag[0.0]  # speed raises the cutoff: less lag
    assert lag[0.05] < 10.0


def test_one_euro_restarts_missing_entries():
    f = OneEuroFilter(min_cutoff=0.5)
    f(np.array([[0.0, 0.0], [10.0, 10.0]]), 0.0)
    f(np.array([[0.0, 0.0], [0.0, 0.0]]), 1 / 30, valid=np.array([True, False]))
    out = f(np.array([[0.0, 0.0], [50.0, 50.0]]), 2 / 30)
    assert np.allclose(out[1], 50.0)  # back after a gap: no smoothing from the stale value
    assert np.allclose(out[0], 0.0)
    with pytest.raises(ValueError, match="min_cutoff"):
        OneEuroFilter(min_cutoff=0)


# ----------------------------------------------------------------------------- tracking


def person(x: float, y: float, height: float = 120.0) -> np.ndarray:
    """(17, 3) a stick person at (x, y) (top), all keypoints found."""
    rows = np.linspace(0, height, 17)
    cols = np.where(np.arange(17) % 2 == 0, -15.0, 15.0)
    return np.stack([x + cols, y + rows, np.ones(17)], -1).astype(np.float32)


def test_tracker_keeps_ids_of_crossing_people_and_after_gaps():
    tracker = Tracker(max_misses=3, smoothing=False)
    ids = []
    for t in range(20):  # two people walk towards each other, 8 px per frame, at depths apart
        a, b = person(50 + 8 * t, 20), person(250 - 8 * t, 60, height=140)
        frame = [a, b] if t not in (6, 7) else [b]  # a is missed for two frames
        people = tracker.update(np.stack(frame), np.ones(len(frame)), t / 30)
        ids.append({round(float(p["keypoints"][0, 1])): p["id"] for p in people})
    assert {i[20] for i in ids if 20 in i} == {1} and {i[60] for i in ids} == {2}
    for t in range(25, 30):  # a absent for more than max_misses frames: a new id, never reused
        people = tracker.update(person(0, 300)[None], np.ones(1), t / 30)
    assert people[0]["id"] == 3
    people = tracker.update(np.zeros((0, 17, 3)), np.zeros(0), 1.1)
    assert people == [] and tracker.next_id == 4


def test_similarity_oks_and_box_fallback():
    a = person(100, 100)[None]
    sim = similarity_matrix(a, np.stack([person(100, 100), person(104, 100), person(400, 100)]))
    assert sim[0, 0] == pytest.approx(1.0) and 0.3 < sim[0, 1] < 1.0 and sim[0, 2] < 0.01
    sparse = np.zeros((1, 17, 3), np.float32)
    sparse[0, 0] = (100, 100, 1)  # one keypoint in common: falls back to box IoU
    assert similarity_matrix(a, sparse)[0, 0] == 0.0


# ----------------------------------------------------------------------------- sources


def test_image_folder_skips_unreadable_files(tmp_path, capsys):
    image = np.full((40, 60, 3), 90, np.uint8)
    cv2.imwrite(str(tmp_path / "a.png"), image)
    (tmp_path / "b.jpg").write_bytes(b"not an image")
    cv2.imwrite(str(tmp_path / "c.png"), image)
    (tmp_path / "notes.txt").write_text("ignored")
    source = open_source(str(tmp_path))
    frames = list(ReadAhead(iter(source), live=False))
    assert [f.index for f in frames] == [0, 1] and source.skipped == 1
    assert frames[1].time == pytest.approx(1 / 30)
    assert "b.jpg" in capsys.readouterr().err
    assert isinstance(open_source(str(tmp_path / "a.png")), ImageFolder)


def test_video_ends_at_eof_and_bad_inputs(tmp_path):
    path = tmp_path / "v.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (64, 48))
    for i in range(7):
        writer.write(np.full((48, 64, 3), 30 * i, np.uint8))
    writer.release()
    source = open_source(str(path))
    assert source.fps == pytest.approx(25) and len(list(source)) == 7
    (tmp_path / "junk.mp4").write_bytes(b"\0" * 1000)
    with pytest.raises(ValueError, match="cannot read video"):
        open_source(str(tmp_path / "junk.mp4"))
    with pytest.raises(FileNotFoundError, match="input not found"):
        open_source(str(tmp_path / "none.mp4"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images"):
        open_source(str(tmp_path / "empty"))


class FlakyCamera:
    """A cv2.VideoCapture stand-in: frames, a hiccup, frames, then unplugged (reads fail)."""

    def __init__(self, script: str) -> None:
        self.script = list(script)  # "f" frame, "x" failed read, "e" raises cv2.error

    def get(self, prop):
        return 30.0 if prop == cv2.CAP_PROP_FPS else 0

    def read(self):
        step = self.script.pop(0) if self.script else "x"
        if step == "e":
            raise cv2.error("device gone")
        return (True, np.zeros((8, 8, 3), np.uint8)) if step == "f" else (False, None)

    def release(self):
        self.released = True


def test_camera_hiccups_are_retried_and_disconnect_ends(capsys):
    camera = FlakyCamera("ffxxeff")
    source = VideoCapture(camera, "camera 9", live=True, camera_retries=5, retry_wait=0.0)
    frames = list(ReadAhead(iter(source), live=False))
    assert len(frames) == 4  # the hiccup is survived, the final loss ends the stream
    assert "stopped delivering frames" in capsys.readouterr().err
    source.close()
    assert camera.released


class DamagedFile(FlakyCamera):
    """A video file of 6 frames whose third frame cannot be decoded."""

    def __init__(self) -> None:
        super().__init__("ffxfff")
        self.position = 0

    def get(self, prop):
        counts = {cv2.CAP_PROP_FRAME_COUNT: 6, cv2.CAP_PROP_POS_FRAMES: self.position}
        return counts.get(prop, 25.0)

    def read(self):
        self.position += 1
        return super().read()


def test_corrupt_video_frame_is_skipped_then_eof(capsys):
    source = VideoCapture(DamagedFile(), "damaged.mp4", live=False)
    frames = list(source)
    assert len(frames) == 5 and source.skipped == 1
    assert [f.time for f in frames][:2] == [0.0, pytest.approx(1 / 25)]
    assert "unreadable frame" in capsys.readouterr().err


# ----------------------------------------------------------------------------- drawing


def test_draw_person_and_3d_panel():
    image = np.zeros((100, 100, 3), np.uint8)
    keypoints = np.zeros((17, 3), np.float32)
    keypoints[5], keypoints[7] = (20, 20, 1), (80, 80, 1)  # left shoulder -> left elbow
    draw_person(image, keypoints, track_id=3)
    colour = np.array(colour_of(3))
    on_limb = np.abs(image[50, 45:56].astype(int) - colour).sum(-1).min()
    assert on_limb < 40 and image[80, 20].max() == 0  # the limb, not the far corner

    _, _, people = render_image(0, 5, 256, 192, 1)
    joints = np.array(people[0]["keypoints_3d"], np.float32)  # (21, 3) mm, camera axes
    panel = draw_pose3d_panel([(1, joints)], (160, 200), yaw_deg=0.0, pitch_deg=0.0)
    mask = np.abs(panel.astype(int) - colour_of(1)).sum(-1) < 60
    rows, cols = np.nonzero(mask)
    assert mask.sum() > 100 and np.ptp(rows) > np.ptp(cols)  # a standing person: taller than wide
    # "up" stays up: the skeleton reaches far above its root (white dot, the pelvis) and below
    assert joints[JOINTS21_NAMES.index("head_top"), 1] < joints[JOINTS21_NAMES.index("pelvis"), 1]
    root_row = np.nonzero((panel > 240).all(-1))[0].mean()
    assert rows.min() < root_row - 30 and rows.max() > root_row + 30
    empty = draw_pose3d_panel([], (160, 200))
    assert not (np.abs(empty.astype(int) - colour_of(1)).sum(-1) < 60).any()
    assert compose(np.zeros((100, 150, 3), np.uint8), panel).shape == (100, 230, 3)


def test_banner_and_panel_title_fit_narrow_frames():
    text = "2 people  3D: Stage II lifting + skeleton fit"
    for width in (640, 240, 120):
        image = np.zeros((120, width, 3), np.uint8)
        draw_fps(image, 29.7, text)
        banner = image[:30] > 0  # the black box's text: white pixels
        columns = np.flatnonzero(banner.any((0, 2)))
        assert len(columns) and columns.max() < width - 4, width  # the last letter is inside
        panel = draw_pose3d_panel([], (width, 120), title=text)
        lit = np.flatnonzero((panel[:30] > 32).any((0, 2)))
        assert lit.max() < width - 4, width
    wide = np.zeros((120, 640, 3), np.uint8)
    draw_fps(wide, 29.7, "2 people")
    assert fitted_scale("2 people", 0.5, 600) == 0.5  # short labels keep their size
