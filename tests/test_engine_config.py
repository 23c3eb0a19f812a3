"""Config files and overrides: every mistake is a one-line error naming key, file and choices."""

from __future__ import annotations

from pathlib import Path

import pytest

from selecsls.tools.engine.config import ConfigError, parse_override
from selecsls.tools.engine.experiment import load_experiment
from selecsls.tools.train import main as train_main

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "configs").glob("imagenet/*.yaml")) + [
    REPO / "configs" / "quickstart" / "digits.yaml"
]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "exp.yaml"
    path.write_text(text)
    return path


def folder_config(tmp_path: Path, extra: str = "") -> Path:
    for split in ("train", "val"):
        (tmp_path / "data" / split / "a").mkdir(parents=True)
    return write(tmp_path, f"task: classification\ndata:\n  root: {tmp_path / 'data'}\n{extra}")


def test_shipped_configs_resolve_with_their_data_root(tmp_path):
    assert CONFIGS, "no configs shipped"
    for path in CONFIGS:
        (tmp_path / "train" / "a").mkdir(parents=True, exist_ok=True)
        (tmp_path / "val" / "a").mkdir(parents=True, exist_ok=True)
        task, config = load_experiment(path, [f"data.root={tmp_path}"])
        assert config["task"] == task.name
        assert set(config) >= {"model", "data", "optim", "schedule", "ema", "run", "loss"}


def test_overrides_are_typed_and_applied(tmp_path):
    path = folder_config(tmp_path)
    _, config = load_experiment(
        path, ["optim.lr=1", "data.scale=[0.5, 1]", "run.amp=bf16", "run.resume=false"]
    )
    assert config["optim"]["lr"] == 1.0 and isinstance(config["optim"]["lr"], float)
    assert config["data"]["scale"] == [0.5, 1.0]
    assert config["run"]["amp"] == "bf16"
    assert parse_override("data.root=/a=b") == ("data", "root", "/a=b")


def test_exponent_numbers_without_a_dot_are_numbers(tmp_path):
    # PyYAML reads `5e-4` as a string; users write it in files and on the command line
    path = folder_config(tmp_path, "optim:\n  weight_decay: 5e-4\n")
    _, config = load_experiment(path, ["optim.lr=4e-3", "data.scale=[5e-1, 1E0]"])
    assert config["optim"]["lr"] == 0.004 and config["optim"]["weight_decay"] == 0.0005
    assert config["data"]["scale"] == [0.5, 1.0]
    with pytest.raises(ValueError, match="optim.lr"):
        load_experiment(path, ["optim.lr=e-3"])


@pytest.mark.parametrize(
    ("extra", "overrides", "needles"),
    [
        ("optim:\n  lrr: 0.1\n", [], ["optim.lrr", "exp.yaml", "valid keys", "lr"]),
        ("", ["optim.lr=fast"], ["optim.lr", "command line", "number"]),
        ("run:\n  amp: fp8\n", [], ["run.amp", "exp.yaml", "bf16", "fp16"]),
        ("trainer:\n  x: 1\n", [], ["trainer", "valid sections", "optim"]),
        ("", ["lr=0.1"], ["section.key"]),
        ("", ["schedule.epochs=0"], ["schedule.epochs", ">= 1"]),
        ("", ["run.resume=/nope/last.pt"], ["run.resume", "/nope/last.pt"]),
        ("", ["model.backbone=resnet50"], ["model.backbone", "resnet50", "selecsls60b"]),
    ],
)
def test_mistakes_name_key_file_and_choices(tmp_path, extra, overrides, needles):
    path = folder_config(tmp_path, extra)
    with pytest.raises(ValueError) as info:
        load_experiment(path, overrides)
    for needle in needles:
        assert needle in str(info.value)


def test_bad_yaml_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_experiment(tmp_path / "none.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_experiment(write(tmp_path, "optim: [unclosed\n"))
    with pytest.raises(ConfigError, match="unknown task 'pose9'"):
        load_experiment(write(tmp_path, "task: pose9\n"))


def test_missing_data_folder_fails_before_training(tmp_path, capsys):
    path = write(tmp_path, f"data:\n  root: {tmp_path / 'nowhere'}\n")
    assert train_main_cli([str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: data.root/data.train_dir") and "nowhere" in err
    assert "Traceback" not in err
    assert not (tmp_path / "runs").exists()


def test_missing_weights_say_where_a_relative_path_was_looked_for(tmp_path, capsys, monkeypatch):
    """Recipes name earlier runs' checkpoints as runs/...: relative to the current folder."""
    monkeypatch.chdir(tmp_path)
    path = folder_config(tmp_path, "model:\n  weights: runs/coco/best.pt\n")
    assert train_main_cli([str(path), "run.out_dir=" + str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: model.weights: runs/coco/best.pt is neither a file")
    assert f"looked in {Path.cwd() / 'runs' / 'coco' / 'best.pt'}" in err
    assert "Traceback" not in err and not (tmp_path / "out").exists()


def test_cli_reports_unknown_key_without_traceback(tmp_path, capsys):
    path = folder_config(tmp_path)
    assert train_main_cli([str(path), "ema.decai=0.9"]) == 2
    err = capsys.readouterr().err
    assert "ema.decai" in err and "decay" in err and "Traceback" not in err


def train_main_cli(argv: list[str]) -> int:
    from selecsls.tools._cli import run_cli

    return run_cli(train_main, argv)
