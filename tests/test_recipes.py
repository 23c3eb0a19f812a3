"""Rehearsals of the shipped recipes (configs/imagenet, configs/coco, configs/muco), as shipped.

Each recipe is read from its file and run through `selecsls.tools.train` on miniature data laid
out exactly as the real datasets are (tests/recipe_data.py, built from the real images in
../shared/data). Only data.root and size, step or logging overrides change (ALLOWED_OVERRIDES,
checked against every run's saved config): a few optimiser steps, a full evaluation, a resume. The
published weights the COCO recipe names (selecsls60.timm) come from a stand-in file in timm's
format through SELECSLS_WEIGHTS_MIRROR=file://...; the MuCo recipe's model.weights
(runs/xnect2d_selecsls60/best.pt, relative to the working directory) is the COCO rehearsal's
output, run in the same working directory with the COCO recipe's own out_dir. Also rehearsed: a
2-process torchrun (gloo) of the COCO and one ImageNet recipe, a SIGKILL mid-epoch followed by
run.resume=true, and stops right after a checkpoint file is complete (between two of an epoch's
files): an interrupted run must lose nothing. Nothing here depends on what the briefly trained
networks output.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml
from recipe_data import (
    LAUNCHER,
    coco_miniature,
    imagenet_miniature,
    muco_miniature,
    publish_stand_in,
    published_as,
)
from test_engine_train import run_torchrun

from selecsls.backbones import hub
from selecsls.backbones.checkpoint import read_checkpoint
from selecsls.heads import build_classifier, convert_keys, export_state_dict, load_model
from selecsls.heads.pose3d.xnect import stage1_state_from_2d
from selecsls.tools.engine.experiment import load_experiment
from selecsls.tools.eval import main as eval_main
from selecsls.tools.train import main as train_main

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
IMAGENET = ["selecsls42b", "selecsls60", "selecsls60b", "selecsls84"]
COCO = CONFIGS / "coco" / "xnect2d_selecsls60.yaml"
MUCO = CONFIGS / "muco" / "xnect_selecsls60.yaml"
COCO_CENTRE = CONFIGS / "coco" / "centre2d_selecsls60.yaml"
REHEARSED = [f"imagenet/{n}.yaml" for n in IMAGENET] + [
    "coco/xnect2d_selecsls60.yaml",
    "coco/centre2d_selecsls60.yaml",
    "muco/xnect_selecsls60.yaml",
]
# What a rehearsal may change: where the data is, sizes, step counts, logging, resuming.
ALLOWED_OVERRIDES = {
    "data.root",
    "data.image_size",
    "data.input_size",
    "data.batch_size",
    "data.eval_batch_size",
    "data.workers",
    "schedule.epochs",
    "run.max_steps_per_epoch",
    "run.out_dir",
    "run.progress",
    "run.log_every",
    "run.resume",
}
# 4 ImageNet classes, 1 real val image each, the same in train/ and val/; n03908714's image is
# grayscale (ImageNet has a few), which the recipe's loader must take like the others
WNIDS = ["n01440764", "n01530575", "n01601694", "n03908714"]
COCO_TRAIN_COPIES = 8  # 32 train images: 16 steps per epoch at batch 2
COCO_STEPS_PER_EPOCH = 4 * COCO_TRAIN_COPIES // 2
COCO_SIZES = ["data.input_size=128x128", "data.batch_size=2", "data.eval_batch_size=4"]
COCO_SIZES += ["data.workers=0", "schedule.epochs=2"]
COCO_RUN = Path("runs/xnect2d_selecsls60")  # the recipe's own out_dir (relative to the cwd)
MUCO_RUN = Path("runs/xnect_selecsls60")
MUCO_SIZES = ["data.input_size=128x80", "data.batch_size=2", "data.eval_batch_size=4"]
# one loader worker: the 3D targets are made in the workers (collate), as with the shipped 8
MUCO_SIZES += ["data.workers=1", "run.max_steps_per_epoch=2", "run.progress=false"]


@pytest.fixture(scope="module")
def miniatures(shared_data, tmp_path_factory) -> SimpleNamespace:
    root = tmp_path_factory.mktemp("recipe_data")
    return SimpleNamespace(
        imagenet=imagenet_miniature(shared_data, root / "imagenet", WNIDS),
        coco=coco_miniature(shared_data, root / "coco", COCO_TRAIN_COPIES),
        muco=muco_miniature(shared_data, root / "muco"),
    )


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """A freshly initialised SelecSLS-60 in timm's file format, served by a file:// mirror as
    selecsls60.timm, with an empty cache. The stand-in cannot have the SHA-256 prefix that the
    published name promises (bbf87526), and the hub rightly refuses such a file, so the hub
    entry is pointed at the stand-in's own hashed name: mirror, download and check stay real.
    Subprocesses get the same change through RECIPE_PUBLISHED_FILE (tests/recipe_data.py)."""
    root = tmp_path_factory.mktemp("published")
    torch.manual_seed(0)
    state = export_state_dict(build_classifier("selecsls60"), "timm")
    url = hub.PUBLISHED["selecsls60.timm"].url
    path, name = publish_stand_in(state, url, root / "mirror")
    spec = f"selecsls60.timm={name}"
    patch = pytest.MonkeyPatch()
    patch.setitem(hub.PUBLISHED, *published_as(spec))
    patch.setenv("RECIPE_PUBLISHED_FILE", spec)
    patch.setenv("SELECSLS_WEIGHTS_MIRROR", (root / "mirror").as_uri())
    patch.setenv("SELECSLS_CACHE", str(root / "cache"))
    yield SimpleNamespace(path=path, name=name, cache=root / "cache", state=state)
    patch.undo()


def check_overrides(overrides: list[str]) -> None:
    keys = {o.split("=", 1)[0] for o in overrides}
    assert keys <= ALLOWED_OVERRIDES, f"a rehearsal must not change {keys - ALLOWED_OVERRIDES}"


def train(config: Path, overrides: list[str], cwd: Path) -> str:
    """`python -m selecsls.tools.train CONFIG OVERRIDES` in this process, in `cwd`; its stdout."""
    check_overrides(overrides)
    out = io.StringIO()
    with contextlib.chdir(cwd), contextlib.redirect_stdout(out):
        assert train_main([str(config), *overrides]) == 0
    return out.getvalue()


def assert_as_shipped(experiment: dict, config: Path, overrides: list[str]) -> None:
    """Every key the recipe file sets reached the run unchanged, but for the overrides."""
    changed = {o.split("=", 1)[0] for o in overrides}
    shipped = yaml.safe_load(config.read_text())
    assert experiment["task"] == shipped["task"]
    for section, values in shipped.items():
        if section == "task":
            continue
        for key, value in values.items():
            if f"{section}.{key}" not in changed:
                assert experiment[section][key] == value, f"{config.name}: {section}.{key}"


def train_state(path: Path) -> dict:
    return read_checkpoint(path)["train_state"]


def optimizer_steps(state: dict) -> set[int]:
    """The step counts in every parameter's AdamW state (one value for a healthy run)."""
    return {int(s["step"]) for s in state["optimizer"]["state"].values() if "step" in s}


def summary_epochs(out_dir: Path) -> list[int]:
    with open(out_dir / "summary.csv") as f:
        return [int(row["epoch"]) for row in csv.DictReader(f)]


def test_every_shipped_recipe_has_a_rehearsal():
    shipped = sorted(
        p.relative_to(CONFIGS).as_posix()
        for group in ("imagenet", "coco", "muco")
        for p in (CONFIGS / group).glob("*.yaml")
    )
    assert shipped == sorted(REHEARSED)


# ----------------------------------------------------------------------------- ImageNet


def imagenet_overrides(name: str, root: Path, out: Path, epochs: int) -> list[str]:
    return [
        f"data.root={root}",
        "data.image_size=64",
        "data.batch_size=2",
        "data.workers=0",
        f"schedule.epochs={epochs}",
        f"run.out_dir={out}",
        "run.progress=false",
    ]


@pytest.mark.parametrize("name", IMAGENET)
def test_imagenet_recipe_trains_evaluates_and_resumes(name, miniatures, tmp_path):
    config, out = CONFIGS / "imagenet" / f"{name}.yaml", tmp_path / "run"
    overrides = imagenet_overrides(name, miniatures.imagenet, out, epochs=1)
    log = train(config, overrides, tmp_path)
    # the recipe ships run.resume: true, which starts fresh when there is no last.pt yet
    assert "does not exist yet, starting from scratch" in log
    first = read_checkpoint(out / "last.pt")
    assert_as_shipped(first["experiment"], config, overrides)
    assert first["train_state"]["epoch"] == 1
    assert first["train_state"]["scheduler"]["last_epoch"] == 2  # 4 images, batch 2
    assert first["classes"] == WNIDS
    # a full evaluation, of the model and of its EMA (the recipe evaluates and ships the EMA)
    assert first["metrics"]["images"] == 4 and first["metrics"]["ema_images"] == 4
    assert {"top1", "top5", "ema_top1", "ema_top5"} <= set(first["metrics"])
    model = load_model(out / "best.pt")
    assert model.config["backbone"] == name
    assert model.heads.classification.fc.out_features == 1000  # num_classes as shipped

    # resume: the same recipe run longer picks up last.pt (run.resume: true as shipped)
    log = train(config, imagenet_overrides(name, miniatures.imagenet, out, epochs=2), tmp_path)
    assert f"resumed from {out / 'last.pt'} after epoch 1" in log
    state = train_state(out / "last.pt")
    assert state["epoch"] == 2 and state["scheduler"]["last_epoch"] == 4
    assert state["ema"]["updates"] == 4  # SGD keeps no step count: the EMA counts the steps
    assert summary_epochs(out) == [1, 2]


def test_imagenet_recipe_under_torchrun(miniatures, tmp_path, monkeypatch):
    config, out = CONFIGS / "imagenet" / "selecsls42b.yaml", tmp_path / "run"
    overrides = imagenet_overrides("selecsls42b", miniatures.imagenet, out, epochs=1)
    check_overrides(overrides)
    monkeypatch.chdir(tmp_path)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2"]
    run_torchrun([*torchrun, "--standalone", "-m", "selecsls.tools.train", str(config), *overrides])
    checkpoint = read_checkpoint(out / "last.pt")
    state = checkpoint["train_state"]
    assert len(state["rng"]) == 2  # both ranks' RNG states: two processes trained
    assert state["epoch"] == 1 and state["scheduler"]["last_epoch"] == 1  # 4 images / (2 x 2)
    # each of the 4 val images evaluated exactly once over the two ranks, model and EMA
    assert checkpoint["metrics"]["images"] == 4 and checkpoint["metrics"]["ema_images"] == 4


# ----------------------------------------------------------------------------- COCO


def coco_overrides(miniatures) -> list[str]:
    return [f"data.root={miniatures.coco}", *COCO_SIZES]


@pytest.fixture(scope="module")
def coco_run(miniatures, published, tmp_path_factory) -> SimpleNamespace:
    """The COCO recipe run uninterrupted (2 epochs of 16 steps, evaluated after the last) in a
    working directory where it writes its own out_dir, runs/xnect2d_selecsls60."""
    work = tmp_path_factory.mktemp("recipe_work")
    log = train(COCO, [*coco_overrides(miniatures), "run.progress=false"], work)
    return SimpleNamespace(work=work, out=work / COCO_RUN, log=log)


def test_coco_recipe_loads_published_weights_from_the_mirror(coco_run, miniatures, published):
    assert re.search(
        r"model.weights: backbone initialised from selecsls60.timm \(\d+ tensors", coco_run.log
    )
    cached = published.cache / published.name
    assert cached.read_bytes() == published.path.read_bytes()  # downloaded, hash checked
    # the recipe's model starts from exactly the stand-in's backbone tensors
    with contextlib.chdir(coco_run.work):
        task, _ = load_experiment(COCO, coco_overrides(miniatures))
        model = task.build_model()
    ours = convert_keys(published.state, "timm", "selecsls")
    backbone = {k: v for k, v in ours.items() if k.startswith("backbone.")}
    assert backbone and model.state_dict().keys() >= backbone.keys()
    for key, value in backbone.items():
        assert torch.equal(model.state_dict()[key], value), key


def test_coco_recipe_trains_evaluates_and_saves(coco_run, miniatures, tmp_path):
    out = coco_run.out
    checkpoint = read_checkpoint(out / "last.pt")
    assert_as_shipped(
        checkpoint["experiment"], COCO, [*coco_overrides(miniatures), "run.progress=false"]
    )
    state = checkpoint["train_state"]
    assert state["epoch"] == 2
    assert state["scheduler"]["last_epoch"] == 2 * COCO_STEPS_PER_EPOCH
    assert optimizer_steps(state) == {2 * COCO_STEPS_PER_EPOCH}
    # eval.every: 5 as shipped, so the last epoch is the one evaluated: all 4 val images
    metrics = checkpoint["metrics"]
    assert metrics["images"] == 4 and {"AP", "AP50", "AR"} <= set(metrics)
    assert summary_epochs(out) == [1, 2]
    assert isinstance(json.loads((out / "val_results.json").read_text()), list)
    model = load_model(out / "best.pt")
    assert set(model.config["heads"]) == {"xnect2d"}
    # the standalone evaluation of the run's best checkpoint, over the whole val2017
    result = tmp_path / "eval.json"
    ann = miniatures.coco / "annotations" / "person_keypoints_val2017.json"
    args = [str(out / "best.pt"), "--ann", str(ann), "--images", str(miniatures.coco / "val2017")]
    assert eval_main([*args, "--workers", "0", "--batch-size", "4", "--json", str(result)]) == 0
    scores = json.loads(result.read_text())
    assert scores["images"] == 4 and scores["input_size"] == [128, 128]


def test_coco_centre_recipe_trains_evaluates_and_saves(miniatures, published, tmp_path):
    """The centre + offset variant of the COCO recipe as shipped (published backbone weights from
    the mirror, its own out_dir): 2 short epochs, the evaluation, the standalone evaluation."""
    overrides = [*coco_overrides(miniatures), "run.max_steps_per_epoch=4", "run.progress=false"]
    log = train(COCO_CENTRE, overrides, tmp_path)
    assert "model.weights: backbone initialised from selecsls60.timm" in log
    out = tmp_path / "runs" / "centre2d_selecsls60"
    checkpoint = read_checkpoint(out / "last.pt")
    assert_as_shipped(checkpoint["experiment"], COCO_CENTRE, overrides)
    assert checkpoint["train_state"]["epoch"] == 2
    assert optimizer_steps(checkpoint["train_state"]) == {8}
    assert checkpoint["metrics"]["images"] == 4 and {"AP", "AP50", "AR"} <= set(
        checkpoint["metrics"]
    )
    assert set(load_model(out / "best.pt").config["heads"]) == {"centre2d"}
    ann = miniatures.coco / "annotations" / "person_keypoints_val2017.json"
    args = [str(out / "best.pt"), "--ann", str(ann), "--images", str(miniatures.coco / "val2017")]
    result = tmp_path / "eval.json"
    assert eval_main([*args, "--workers", "0", "--batch-size", "4", "--json", str(result)]) == 0
    assert json.loads(result.read_text())["images"] == 4


class OutputReader:
    """Collects a subprocess's stdout in a thread, so the test can poll it."""

    def __init__(self, stream) -> None:
        self.text, self._stream = "", stream
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        for chunk in iter(lambda: self._stream.read(1), ""):
            self.text += chunk


# the progress bar of epoch 2 with k of its n steps done, 0 < k < n (tqdm, written on a pipe)
EPOCH2_PROGRESS = re.compile(r"epoch 2:\s+\d+%\|[^|\r\n]*\|\s*(\d+)/(\d+)")


def mid_epoch2(text: str) -> bool:
    return any(0 < int(k) < int(n) for k, n in EPOCH2_PROGRESS.findall(text))


def test_coco_recipe_killed_mid_epoch_resumes_to_the_same_steps(
    coco_run, miniatures, published, tmp_path
):
    """SIGKILL in the middle of epoch 2 (seen on its progress bar, after last.pt of epoch 1),
    then run.resume=true: the run continues from last.pt and ends where the uninterrupted run
    (coco_run, same overrides) ended, with nothing lost or counted twice."""
    overrides = coco_overrides(miniatures)  # run.progress: true (default): the kill's signal
    # each logged step redraws the bar (set_postfix), so k/16 shows however fast the CPU: its
    # 1 s refresh alone can skip a whole epoch (a Zen 5 runs one in 1 s). Logging only: the
    # trained state is coco_run's.
    killed_overrides = [*overrides, "run.log_every=1"]
    check_overrides(killed_overrides)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, str(LAUNCHER), str(COCO), *killed_overrides],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )  # fmt: skip
    reader = OutputReader(proc.stdout)
    last = tmp_path / COCO_RUN / "last.pt"
    deadline = time.monotonic() + 180
    try:
        while not (last.is_file() and mid_epoch2(reader.text)):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the run was not seen mid-epoch 2 (exit {proc.returncode}):\n"
                            f"{reader.text[-4000:]}")  # fmt: skip
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    killed = train_state(last)
    assert killed["epoch"] == 1  # epoch 2 did not finish: its steps are lost to the kill only
    assert killed["scheduler"]["last_epoch"] == COCO_STEPS_PER_EPOCH
    assert summary_epochs(tmp_path / COCO_RUN) == [1]

    log = train(COCO, [*overrides, "run.resume=true", "run.progress=false"], tmp_path)
    assert f"resumed from {COCO_RUN / 'last.pt'} after epoch 1" in log
    resumed = read_checkpoint(last)
    reference = train_state(coco_run.out / "last.pt")
    state = resumed["train_state"]
    assert state["epoch"] == reference["epoch"] == 2
    assert state["scheduler"]["last_epoch"] == reference["scheduler"]["last_epoch"]
    assert optimizer_steps(state) == optimizer_steps(reference) == {2 * COCO_STEPS_PER_EPOCH}
    assert summary_epochs(tmp_path / COCO_RUN) == [1, 2]  # every epoch once
    assert resumed["metrics"]["images"] == 4 and (tmp_path / COCO_RUN / "best.pt").is_file()


class Interrupted(BaseException):
    """Stands for a SIGKILL: not an Exception, so none of the run's own handlers catch it."""


@pytest.mark.parametrize("kill_after", [1, 2])
def test_coco_recipe_interrupted_after_a_checkpoint_write_loses_nothing(
    kill_after, miniatures, published, tmp_path, monkeypatch
):
    """The run stops right after its k-th checkpoint file (*.pt) is complete: k = 1 at the end
    of epoch 1, k = 2 at the end of epoch 2, the evaluated one (eval.every: 5 evaluates the last
    epoch), which also writes best.pt. A SIGKILL cannot be timed to land between two files; the
    stop in os.replace can. After run.resume=true, every epoch's summary row is there once,
    best.pt exists and is the epoch last.pt records as best, and the step count is complete."""
    overrides = [*coco_overrides(miniatures), "run.max_steps_per_epoch=2", "run.progress=false"]
    real_replace, written = os.replace, []

    def replace(src, dst, *args, **kwargs):
        real_replace(src, dst, *args, **kwargs)
        if str(dst).endswith(".pt"):
            written.append(Path(dst).name)
            if len(written) == kill_after:
                raise Interrupted(dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(Interrupted):
        train(COCO, overrides, tmp_path)
    monkeypatch.setattr(os, "replace", real_replace)
    log = train(COCO, [*overrides, "run.resume=true"], tmp_path)
    assert "resumed from" in log
    out = tmp_path / COCO_RUN
    last = train_state(out / "last.pt")
    assert last["epoch"] == 2 and last["scheduler"]["last_epoch"] == 4
    assert optimizer_steps(last) == {4}
    assert summary_epochs(out) == [1, 2]
    best = read_checkpoint(out / "best.pt")  # the MuCo recipe starts from it
    assert best["train_state"]["epoch"] == 2 and best["train_state"]["best"] == last["best"]


def test_coco_recipe_under_torchrun(miniatures, published, tmp_path, monkeypatch):
    """Two gloo processes; an empty cache of their own, so both ranks fetch selecsls60.timm from
    the mirror at the same time."""
    monkeypatch.setenv("SELECSLS_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    overrides = [*coco_overrides(miniatures), "schedule.epochs=1", "run.progress=false"]
    check_overrides(overrides)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2"]
    run_torchrun([*torchrun, "--standalone", str(LAUNCHER), str(COCO), *overrides])
    checkpoint = read_checkpoint(tmp_path / COCO_RUN / "last.pt")
    state = checkpoint["train_state"]
    assert len(state["rng"]) == 2
    assert state["epoch"] == 1 and state["scheduler"]["last_epoch"] == COCO_STEPS_PER_EPOCH // 2
    assert checkpoint["metrics"]["images"] == 4  # each val image once over the two ranks
    assert (tmp_path / "cache" / published.name).read_bytes() == published.path.read_bytes()
    assert (tmp_path / COCO_RUN / "best.pt").is_file()


# ----------------------------------------------------------------------------- MuCo


def test_muco_recipe_starts_from_the_coco_run_trains_evaluates_and_resumes(
    coco_run, miniatures, tmp_path
):
    """model.weights as shipped (runs/xnect2d_selecsls60/best.pt, relative to the working
    directory) is the COCO rehearsal's best.pt: the run happens in the COCO run's directory."""
    work, out = coco_run.work, coco_run.work / MUCO_RUN
    overrides = [f"data.root={miniatures.muco}", *MUCO_SIZES, "schedule.epochs=1"]
    log = train(MUCO, overrides, work)
    source = f"{COCO_RUN / 'best.pt'}"
    assert f"model.weights: 2D checkpoint (backbone + 2D branch) {source}" in log
    # backbone and 2D branch start as the COCO run's best.pt; the 3D branch is new
    with contextlib.chdir(work):
        task, _ = load_experiment(MUCO, overrides)
        model = task.build_model()
    loaded = stage1_state_from_2d(read_checkpoint(coco_run.out / "best.pt")["state_dict"])
    for key, value in loaded.items():
        assert torch.equal(model.state_dict()[key], value), key
    assert any(".trunk3d." in k for k in model.state_dict())

    checkpoint = read_checkpoint(out / "last.pt")
    assert_as_shipped(checkpoint["experiment"], MUCO, overrides)
    assert checkpoint["train_state"]["scheduler"]["last_epoch"] == 2
    # a full MuPoTS evaluation: all 12 people of the 4 val images, every 3D metric
    metrics = checkpoint["metrics"]
    assert metrics["people_gt"] == 12
    assert {"pck", "pck_all", "auc", "mpjpe", "pa_mpjpe", "gt2d_pck"} <= set(metrics)
    result = tmp_path / "eval.json"
    mupots = miniatures.muco / "mupots"
    args = [str(out / "best.pt"), "--ann", str(mupots / "MuPoTS-3D.json")]
    args += ["--images", str(mupots / "MultiPersonTestSet"), "--workers", "0"]
    assert eval_main([*args, "--json", str(result)]) == 0
    scores = json.loads(result.read_text())
    assert scores["images"] == 4 and scores["people_gt"] == 12

    resume = [f"data.root={miniatures.muco}", *MUCO_SIZES, "schedule.epochs=2", "run.resume=true"]
    log = train(MUCO, resume, work)
    assert f"resumed from {MUCO_RUN / 'last.pt'} after epoch 1" in log
    state = train_state(out / "last.pt")
    assert state["epoch"] == 2 and state["scheduler"]["last_epoch"] == 4
    assert optimizer_steps(state) == {4}
    assert summary_epochs(out) == [1, 2]
