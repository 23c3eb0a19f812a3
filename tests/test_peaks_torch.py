"""The static-shape torch peak finder and limb scorer equal the numpy decoder's functions."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.overrides import TorchFunctionMode

from selecsls.heads.pose2d import codec as codec_module
from selecsls.heads.pose2d.codec import Pose2DCodec
from selecsls.heads.pose2d.grouping import group_people, score_pairs
from selecsls.heads.pose2d.peaks import Peaks, find_peaks, to_numpy
from selecsls.heads.pose2d.peaks_torch import (
    find_peaks_torch,
    min_accepted_count,
    score_limbs_torch,
    to_peaks,
)
from selecsls.heads.pose2d.slots import slot_outputs
from selecsls.tools.bench.kernels import count_kernels

COCO_JSON = (
    Path(__file__).resolve().parents[2] / "shared" / "data" / "coco_sample"
    / "person_keypoints_sample.json"
)  # fmt: skip
INPUT_SIZE = (640, 640)  # (W, H): holds every sample image, so one batch of equal maps


def coco_maps() -> dict[str, np.ndarray]:
    """The COCO sample's people encoded per image: heatmaps (N, 19, 80, 80), pafs (N, 38, ...)."""
    if not COCO_JSON.is_file():
        pytest.skip("shared COCO sample not present")
    data = json.loads(COCO_JSON.read_text())
    people = defaultdict(list)
    for annotation in data["annotations"]:
        people[annotation["image_id"]].append(np.reshape(annotation["keypoints"], (17, 3)))
    codec = Pose2DCodec()
    encoded = [
        codec.encode(np.array(people[image["id"]], np.float32), INPUT_SIZE)
        for image in data["images"]
    ]
    return {name: np.stack([e[name] for e in encoded]) for name in ("heatmaps", "pafs")}


@pytest.fixture(scope="module")
def maps() -> dict[str, np.ndarray]:
    return coco_maps()


def assert_same_peaks(torch_peaks: Peaks, numpy_peaks: Peaks) -> None:
    """Same kinds and scores in the same order, xy equal up to float32 log rounding."""
    assert len(torch_peaks.kind) == len(numpy_peaks.kind)
    np.testing.assert_array_equal(torch_peaks.kind, numpy_peaks.kind)
    np.testing.assert_array_equal(torch_peaks.score, numpy_peaks.score)
    np.testing.assert_allclose(torch_peaks.xy, numpy_peaks.xy, rtol=0, atol=1e-5)


def check_against_numpy(heatmaps: np.ndarray, threshold: float, top_k: int) -> list[Peaks]:
    """Torch peaks of a (N, K, h, w) batch equal find_peaks per image; returns the torch ones."""
    score, xy, valid = find_peaks_torch(torch.from_numpy(heatmaps), threshold, top_k)
    assert score.shape == valid.shape == heatmaps.shape[:2] + (top_k,)
    assert xy.shape == heatmaps.shape[:2] + (top_k, 2)
    found = []
    for n in range(len(heatmaps)):
        peaks = to_peaks(score, xy, valid, n)
        assert_same_peaks(peaks, find_peaks(heatmaps[n], threshold, top_k))
        found.append(peaks)
    return found


@pytest.mark.parametrize("top_k", [64, 8, 2])
def test_coco_maps_equal_numpy(maps, top_k):
    keypoint_maps = maps["heatmaps"][:, :18]
    peaks = check_against_numpy(keypoint_maps, 0.1, top_k)
    counts = [len(p.kind) for p in peaks]
    # both orders of find_peaks are exercised: at top_k 64 an image of one person stays in raster
    # order, a crowded one exceeds the cap and is ordered by score
    all_peaks = [len(find_peaks(m, 0.1).kind) for m in keypoint_maps]
    if top_k == 64:
        assert min(all_peaks) <= 64 < max(all_peaks), all_peaks
    assert sum(counts) > 0


def test_batch_equals_single_images(maps):
    heatmaps = torch.from_numpy(maps["heatmaps"][:, :18])
    batch = find_peaks_torch(heatmaps, 0.1, 16)
    for n in range(len(heatmaps)):
        single = find_peaks_torch(heatmaps[n : n + 1], 0.1, 16)
        for whole, alone in zip(batch, single):
            assert torch.equal(whole[n : n + 1], alone)


@pytest.mark.parametrize("seed", range(4))
def test_random_maps_with_ties_equal_numpy(seed):
    rng = np.random.default_rng(seed)
    smooth = rng.random((3, 6, 17, 23)).astype(np.float32)
    # few distinct levels: plateaus, equal neighbours and equal scores across peaks everywhere,
    # so both the tie rule and which tied peak survives the cap are tested
    coarse = (rng.integers(0, 4, (3, 6, 17, 23)) / 4).astype(np.float32)
    signed = (rng.integers(-4, 4, (3, 6, 17, 23)) / 4).astype(np.float32)
    # thresholds below zero take the signed-key path, at or above it the positive-bits one
    for heatmaps, threshold in ((smooth, 0.1), (coarse, 0.1), (coarse, 0.0), (signed, -0.3)):
        for top_k in (1, 5, 400):
            check_against_numpy(heatmaps, threshold, top_k)


def test_plateaus_keep_their_first_cell():
    heatmaps = np.zeros((2, 9, 12), np.float32)
    heatmaps[0, 2:5, 3:7] = 0.7  # a 3 x 4 plateau
    heatmaps[0, 7, 9:11] = 0.5  # two equal cells side by side
    heatmaps[1, 4, 4] = heatmaps[1, 5, 3] = 0.6  # diagonal twins: the upper one is first
    score, xy, valid = find_peaks_torch(torch.from_numpy(heatmaps[None]), 0.1, 4)
    peaks = to_peaks(score, xy, valid, 0)
    np.testing.assert_array_equal(peaks.kind, [0, 0, 1])
    # first cells, offset pushed half a cell towards the equal neighbour (parabola vertex)
    np.testing.assert_allclose(peaks.xy, [[3.5, 2.5], [9.5, 7.0], [4.0, 4.0]], atol=1e-6)
    assert_same_peaks(peaks, find_peaks(heatmaps, 0.1, 4))


def test_border_peaks_have_no_offset_across_the_border():
    heatmaps = np.full((1, 6, 7), 0.05, np.float32)
    for row, col in ((0, 0), (0, 6), (5, 0), (5, 6), (0, 3), (3, 0)):
        heatmaps[0, row, col] = 0.9
    heatmaps[0, 0, 4] = 0.6  # pulls the top-edge peak's x, not its y
    score, xy, valid = find_peaks_torch(torch.from_numpy(heatmaps[None]), 0.1, 8)
    peaks = to_peaks(score, xy, valid, 0)
    assert len(peaks.kind) == 6
    assert_same_peaks(peaks, find_peaks(heatmaps, 0.1, 8))
    corners = np.isin(peaks.xy[:, 0], (0, 6)) & np.isin(peaks.xy[:, 1], (0, 5))
    assert corners.sum() == 4  # no offset at all at the corners
    top_edge = peaks.xy[(peaks.xy[:, 1] == 0) & (peaks.xy[:, 0] > 2) & (peaks.xy[:, 0] < 5)]
    assert len(top_edge) == 1 and 3 < top_edge[0, 0] < 3.5


def test_more_peaks_than_top_k_keeps_the_highest():
    heatmaps = np.zeros((1, 1, 10, 30), np.float32)
    cols = np.arange(0, 30, 3)
    heatmaps[0, 0, 5, cols] = np.linspace(0.2, 0.9, len(cols), dtype=np.float32)[::-1]
    heatmaps[0, 0, 8, 1] = heatmaps[0, 0, 5, 0]  # ties with the highest: raster order wins
    score, xy, valid = find_peaks_torch(torch.from_numpy(heatmaps), 0.1, 3)
    assert valid.all()
    np.testing.assert_allclose(xy[0, 0].numpy(), [[0, 5], [1, 8], [3, 5]])
    assert_same_peaks(to_peaks(score, xy, valid, 0), find_peaks(heatmaps[0], 0.1, 3))


def test_top_k_larger_than_the_map_pads_invalid_slots():
    heatmaps = np.zeros((1, 2, 2, 3), np.float32)
    heatmaps[0, 0, 1, 2] = 0.5
    score, xy, valid = find_peaks_torch(torch.from_numpy(heatmaps), 0.1, 10)
    assert valid.shape == (1, 2, 10) and valid.sum() == 1 and valid[0, 0, 0]
    assert float(score[~valid].abs().sum()) == 0 and float(xy[~valid].abs().sum()) == 0


def test_signed_zeros_and_negative_values_tie_like_numpy():
    heatmaps = np.array([[[-0.0, 0.0, -0.5], [0.0, -0.0, -0.5], [-0.5, -0.5, -0.25]]], np.float32)
    check_against_numpy(heatmaps[None], -1.0, 2)
    check_against_numpy(heatmaps[None], -1.0, 5)


def test_bfloat16_maps(maps):
    heatmaps = torch.from_numpy(maps["heatmaps"][:, :18])
    low = heatmaps.to(torch.bfloat16)
    score, xy, valid = find_peaks_torch(low, 0.1, 64)
    assert score.dtype == xy.dtype == torch.float32
    full = find_peaks_torch(heatmaps, 0.1, 64)
    for n in range(len(heatmaps)):
        # exact against numpy on the same (bfloat16-rounded) values, as the decoder sees them
        peaks = to_peaks(score, xy, valid, n)
        assert_same_peaks(peaks, find_peaks(to_numpy(low[n]), 0.1, 64))
        # and close to the float32 maps' strong peaks: rounding may move a plateau by a cell
        reference = to_peaks(*full, n)
        strong = reference.score > 0.5
        for kind, point, value in zip(*(field[strong] for field in reference)):
            same = peaks.kind == kind
            distance = np.abs(peaks.xy[same] - point).max(1)
            best = np.argmin(distance)
            assert distance[best] <= 1.0 and abs(peaks.score[same][best] - value) < 0.02


def test_decode_with_torch_peaks_gives_the_same_people(maps, monkeypatch):
    codec = Pose2DCodec()
    expected = [codec.decode(h, p) for h, p in zip(maps["heatmaps"], maps["pafs"])]
    assert sum(len(scores) for _, scores in expected) >= 10

    def torch_find_peaks(heatmaps, threshold, max_per_kind):
        result = find_peaks_torch(torch.from_numpy(heatmaps[None]), threshold, max_per_kind)
        return to_peaks(*result, 0)

    monkeypatch.setattr(codec_module, "find_peaks", torch_find_peaks)
    for (heatmaps, pafs), (keypoints, scores) in zip(zip(maps["heatmaps"], maps["pafs"]), expected):
        got_keypoints, got_scores = codec.decode(heatmaps, pafs)
        np.testing.assert_array_equal(got_keypoints[..., 2], keypoints[..., 2])
        np.testing.assert_allclose(got_keypoints, keypoints, rtol=0, atol=1e-4)
        np.testing.assert_allclose(got_scores, scores, rtol=1e-6)


def test_group_people_on_truncated_torch_peaks(maps):
    codec = Pose2DCodec()
    score, xy, valid = find_peaks_torch(torch.from_numpy(maps["heatmaps"][:, :18]), 0.1, 3)
    for n in range(len(maps["pafs"])):
        numpy_peaks = find_peaks(maps["heatmaps"][n, :18], 0.1, 3)
        people, scores = group_people(numpy_peaks, maps["pafs"][n], codec.limbs)
        got, got_scores = group_people(to_peaks(score, xy, valid, n), maps["pafs"][n], codec.limbs)
        assert got.shape == people.shape
        np.testing.assert_array_equal(got[..., 2], people[..., 2])
        np.testing.assert_allclose(got[..., :2], people[..., :2], atol=1e-5)
        np.testing.assert_allclose(got_scores, scores, rtol=1e-6)


def test_score_limbs_equal_score_pairs(maps):
    codec = Pose2DCodec()
    top_k = 6
    _, xy, valid = find_peaks_torch(torch.from_numpy(maps["heatmaps"][:, :18]), 0.1, top_k)
    pafs = torch.from_numpy(maps["pafs"])
    for min_length in (1e-3, 1.0):
        score, count, pair_valid = score_limbs_torch(
            xy, valid, pafs, codec.limbs, codec.paf_samples, codec.paf_min_score, min_length
        )
        ratio = count.numpy() / codec.paf_samples  # numpy's float64 division, as score_pairs'
        assert score.shape == count.shape == pair_valid.shape == (4, len(codec.limbs), top_k, top_k)
        checked = 0
        for n in range(len(pafs)):
            for limb, (a, b) in enumerate(codec.limbs):
                i, j = np.nonzero(pair_valid[n, limb].numpy())
                if len(i) == 0:
                    continue
                want_score, want_ratio = score_pairs(
                    xy[n, a, i].numpy(), xy[n, b, j].numpy(), np.full(len(i), limb),
                    maps["pafs"][n], codec.paf_samples, codec.paf_min_score, min_length,
                )  # fmt: skip
                np.testing.assert_allclose(score[n, limb, i, j].numpy(), want_score, atol=1e-6)
                np.testing.assert_array_equal(ratio[n, limb, i, j], want_ratio)
                checked += len(i)
        assert checked > 100
        accepted = (ratio > codec.paf_min_ratio) & (score > 0).numpy() & pair_valid.numpy()
        assert accepted.sum() >= 10  # real limbs are found, not only rejected pairs


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_graph_capture_matches_cpu(maps):
    heatmaps = torch.from_numpy(maps["heatmaps"][:, :18])
    static = heatmaps.cuda()
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        find_peaks_torch(static, 0.1, 16)  # warm-up outside the capture
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        outputs = find_peaks_torch(static, 0.1, 16)
    static.copy_(heatmaps.flip(0).cuda())
    graph.replay()
    torch.cuda.synchronize()
    for n, image in enumerate(heatmaps.flip(0).numpy()):
        peaks = to_peaks(*(o.cpu() for o in outputs), n)
        assert_same_peaks(peaks, find_peaks(image, 0.1, 16))


def test_negative_maps_rank_like_numpy():
    # all-negative maps: ranking negative floats needs the sign-magnitude flip of the sort key
    rng = np.random.default_rng(5)
    heatmaps = (rng.random((2, 3, 11, 13)) - 1.5).astype(np.float32)
    for top_k in (1, 3):
        check_against_numpy(heatmaps, -2.0, top_k)


def test_score_limbs_on_half_cell_points_round_like_numpy():
    # sample points exactly between two cells (plateau peaks sit at x.5): rounding half to even
    rng = np.random.default_rng(7)
    limbs = ((0, 1), (1, 2), (2, 0))
    xy = torch.from_numpy((rng.integers(0, 17, (2, 3, 5, 2)) / 2).astype(np.float32))
    xy[:, 1, 0] = xy[:, 0, 0]  # coincident endpoints: scored by the field's norm
    xy[:, 2, 0] = xy[:, 1, 1] + 0.5  # under a cell apart: the norm only when min_length is 1
    valid = torch.from_numpy(rng.random((2, 3, 5)) < 0.8)
    valid[:, :, :2] = True
    pafs = (rng.random((2, 6, 9, 9)) * 2 - 1).astype(np.float32)
    for min_length in (1e-3, 1.0):
        score, count, pair_valid = score_limbs_torch(
            xy, valid, torch.from_numpy(pafs), limbs, 5, 0.05, min_length
        )
        ratio = count.numpy() / 5
        for n in range(2):
            for limb, (a, b) in enumerate(limbs):
                i, j = np.nonzero(pair_valid[n, limb].numpy())
                want_score, want_ratio = score_pairs(
                    xy[n, a, i].numpy(), xy[n, b, j].numpy(), np.full(len(i), limb), pafs[n], 5,
                    0.05, min_length,
                )  # fmt: skip
                np.testing.assert_allclose(score[n, limb, i, j].numpy(), want_score, atol=1e-6)
                np.testing.assert_array_equal(ratio[n, limb, i, j], want_ratio)


def test_min_accepted_count_is_numpys_ratio_test():
    for samples in (1, 5, 10, 16):
        for min_ratio in (0.0, 0.3, 0.5, 0.8, 0.95, 1.0):
            want = [c for c in range(samples + 1) if c / samples > min_ratio]
            got = min_accepted_count(samples, min_ratio)
            assert got == (want[0] if want else samples + 1)
    assert min_accepted_count(10, 0.8) == 9  # 8 / 10 > 0.8 is false in float64


class ReciprocalDivision(TorchFunctionMode):
    """CUDA's rule for a tensor divided by a Python number: a product with the reciprocal
    (3 * (1 / 10) = 0.30000000000000004), here on the CPU. Only true division: a division
    with a rounding mode (integer floor division) is exact on CUDA too."""

    DIVISIONS = (torch.Tensor.__truediv__, torch.Tensor.div, torch.div, torch.true_divide)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        by_number = len(args) == 2 and type(args[1]) in (int, float)
        if func in self.DIVISIONS and by_number and kwargs.get("rounding_mode") is None:
            return args[0] * (1.0 / args[1])
        return func(*args, **kwargs)


def test_device_decode_is_exact_under_cudas_division_rule():
    # uniform noise puts many limb pairs exactly at count / samples == min_ratio; on an H200 the
    # ratio test flipped 2961 of 77824 of them (104 people instead of numpy's 110)
    rng = np.random.default_rng(4)
    heatmaps = rng.random((19, 40, 64)).astype(np.float32)
    pafs = np.abs(rng.random((38, 40, 64)).astype(np.float32))
    codec = Pose2DCodec(paf_min_ratio=0.3)
    with ReciprocalDivision():
        assert torch.tensor([3.0], dtype=torch.float64) / 10 > 0.3  # the mode is in force
        slots = slot_outputs(torch.from_numpy(heatmaps[None]), torch.from_numpy(pafs[None]), codec)
    got = codec.decode_outputs({key: value[0] for key, value in slots.items()})
    want = codec.decode(heatmaps, pafs)
    assert len(want[1]) > 50
    assert got[0].shape == want[0].shape
    np.testing.assert_allclose(got[0], want[0], rtol=0, atol=1e-4)
    np.testing.assert_allclose(got[1], want[1], rtol=1e-5)


def test_count_kernels_skips_views_and_no_op_casts():
    x = torch.randn(4, 5)

    def calls():
        x.unsqueeze(0), x.t(), x.reshape(20), x.to(torch.float32)  # views, a no-op cast: none
        x.t().reshape(20)  # a copy: one
        x.to(torch.float16)  # a cast: one
        x.add_(1)  # in place: one
        return x + 1  # one

    counts = count_kernels(calls)
    assert sum(counts.values()) == 4, counts
    assert counts["add_"] == 1 and counts["add"] == 1


def test_the_device_decode_launches_few_kernels():
    # on a GPU at batch 1 every small op costs a kernel launch, replayed from a graph or not; the
    # first version of this decode launched 162 kernels at 512x320 input, more than the
    # SelecSLS-60 network before it (129), and a rewrite with the same results takes 76
    codec = Pose2DCodec()
    heatmaps, pafs = torch.rand(1, 19, 40, 64), torch.randn(1, 38, 40, 64)
    with torch.inference_mode():
        slot_outputs(heatmaps, pafs, codec)  # the warm-up makes the cached constants
        counts = count_kernels(lambda: slot_outputs(heatmaps, pafs, codec))
    assert 40 <= sum(counts.values()) <= 90, counts
