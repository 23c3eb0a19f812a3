"""`--precision auto` on the CPU: the fastest precision by measurement, cached per CPU, torch,
threads, model and input size (tools/deploy/precision.py). The choice logic and the cache run
on injected timings (a test must not depend on which precision this CPU happens to favour);
the real measurement is checked for being well formed."""

from __future__ import annotations

import json

import pytest
import torch

from selecsls.heads import build_model, save_model
from selecsls.tools.deploy import precision as P
from selecsls.tools.deploy.quantize import Int8Runner
from selecsls.tools.realtime import loading
from selecsls.tools.realtime.runtime import TorchRunner

SIZE = (64, 48)


@pytest.fixture(scope="module")
def tiny_model():
    config = {"backbone": "selecsls42b", "backbone_width": 0.25, "heads": {"xnect2d": {}}}
    return build_model(config).eval()


def fake_measure(timings: dict[str, float], calls: list):
    def measure(model, size, candidates):
        calls.append((tuple(size), tuple(candidates)))
        return {p: timings[p] for p in candidates}

    return measure


def test_fastest_is_chosen_and_cached(tiny_model, tmp_path, monkeypatch):
    monkeypatch.setattr(P, "cpu_candidates", lambda: ["fp32", "bf16", "int8"])
    cache, calls = tmp_path / "precision.json", []
    measure = fake_measure({"fp32": 30.0, "bf16": 12.0, "int8": 20.0}, calls)
    choice, timings, cached = P.fastest_cpu_precision(tiny_model, SIZE, measure, cache)
    assert (choice, cached) == ("bf16", False) and timings["int8"] == 20.0
    assert calls == [(SIZE, ("fp32", "bf16", "int8"))]
    entry = next(iter(json.loads(cache.read_text()).values()))
    assert entry == {"choice": "bf16", "ms": {"bf16": 12.0, "fp32": 30.0, "int8": 20.0}}
    # the second start reads the cache and measures nothing
    choice, timings, cached = P.fastest_cpu_precision(tiny_model, SIZE, measure, cache)
    assert (choice, cached, len(calls)) == ("bf16", True, 1)
    assert "cached in" in P.describe_choice(choice, timings, cached)
    # another input size (or model) is another entry, measured anew
    other = fake_measure({"fp32": 30.0, "bf16": 40.0, "int8": 10.0}, calls)
    assert P.fastest_cpu_precision(tiny_model, (96, 64), other, cache)[0] == "int8"
    assert len(json.loads(cache.read_text())) == 2


def test_cached_choice_no_longer_available_is_measured_again(tiny_model, tmp_path, monkeypatch):
    cache, calls = tmp_path / "precision.json", []
    monkeypatch.setattr(P, "cpu_candidates", lambda: ["fp32", "int8"])
    key = P.cache_key(tiny_model, SIZE)
    cache.write_text(json.dumps({key: {"choice": "bf16", "ms": {"bf16": 1.0}}}))
    measure = fake_measure({"fp32": 5.0, "int8": 9.0}, calls)
    assert P.fastest_cpu_precision(tiny_model, SIZE, measure, cache)[:2] == (
        "fp32",
        {"fp32": 5.0, "int8": 9.0},
    )
    assert len(calls) == 1


def test_unreadable_cache_is_replaced_with_a_note(tiny_model, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(P, "cpu_candidates", lambda: ["fp32", "int8"])
    cache = tmp_path / "precision.json"
    cache.write_text("{not json")
    measure = fake_measure({"fp32": 5.0, "int8": 2.0}, [])
    assert P.fastest_cpu_precision(tiny_model, SIZE, measure, cache)[0] == "int8"
    assert "ignoring unreadable precision cache" in capsys.readouterr().err
    assert json.loads(cache.read_text())  # rewritten whole
    assert not list(tmp_path.glob("*.tmp"))  # no temporary file left behind


def test_unwritable_cache_costs_only_a_note(tiny_model, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(P, "cpu_candidates", lambda: ["fp32", "int8"])
    blocker = tmp_path / "file"
    blocker.write_text("")
    measure = fake_measure({"fp32": 5.0, "int8": 2.0}, [])
    choice = P.fastest_cpu_precision(tiny_model, SIZE, measure, blocker / "sub" / "p.json")[0]
    assert choice == "int8" and "could not write the precision cache" in capsys.readouterr().err


def test_single_candidate_measures_nothing(tiny_model, tmp_path, monkeypatch):
    monkeypatch.setattr(P, "cpu_candidates", lambda: ["fp32"])

    def measure(*args):
        raise AssertionError("measured with one candidate")

    assert P.fastest_cpu_precision(tiny_model, SIZE, measure, tmp_path / "p.json") == (
        "fp32",
        {},
        False,
    )


def test_cache_key_names_cpu_threads_size_and_model(tiny_model):
    key = P.cache_key(tiny_model, SIZE)
    assert P.cpu_name() in key and "64x48" in key and f"torch {torch.__version__}" in key
    assert f"{torch.get_num_threads()} threads" in key
    wider = build_model(
        {"backbone": "selecsls42b", "backbone_width": 0.5, "heads": {"xnect2d": {}}}
    )
    assert P.cache_key(wider, SIZE) != key


def test_real_measurement_is_well_formed(tiny_model):
    candidates = P.cpu_candidates()
    assert candidates[0] == "fp32" and set(candidates) <= set(P.CPU_PRECISIONS)
    timings = P.measure_precisions(tiny_model, SIZE, candidates, reps=1)
    assert list(timings) == candidates and all(ms > 0 for ms in timings.values())


def test_unknown_precision_is_refused(tiny_model):
    with pytest.raises(ValueError, match="unknown CPU precision 'int4'"):
        P.cpu_runner(tiny_model, "int4", SIZE)


@pytest.mark.parametrize("choice", ["int8", "fp32"])
def test_demo_auto_runs_the_measured_choice(tiny_model, tmp_path, monkeypatch, capsys, choice):
    path = save_model(tiny_model, tmp_path / "tiny.pt")
    monkeypatch.setattr(
        loading, "fastest_cpu_precision", lambda m, s: (choice, {choice: 1.0, "bf16": 2.0}, False)
    )
    estimator = loading.load_torch_estimator(str(path), SIZE, device="cpu")
    assert f"precision auto: {choice}" in capsys.readouterr().out
    if choice == "int8":
        assert isinstance(estimator.runner, Int8Runner)
    else:
        assert isinstance(estimator.runner, TorchRunner) and estimator.runner.precision == "fp32"
    # an explicit precision or --compile is not measured
    monkeypatch.setattr(loading, "fastest_cpu_precision", None)
    assert loading.load_torch_estimator(str(path), SIZE, "cpu", "fp32").runner.precision == "fp32"
