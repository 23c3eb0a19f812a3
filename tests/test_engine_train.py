"""The training engine end to end on tiny generated image folders (CPU, 32 px, few steps)."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from selecsls.backbones.checkpoint import read_checkpoint
from selecsls.heads import build_classifier, load_model
from selecsls.tools.engine import amp
from selecsls.tools.engine.checkpointing import TRAIN_STATE, save_checkpoint
from selecsls.tools.engine.experiment import load_experiment
from selecsls.tools.engine.trainer import Trainer
from selecsls.tools.eval import main as eval_main

TINY = """\
task: classification
model:
  backbone: selecsls42b
data:
  root: {root}
  image_size: 32
  scale: [0.5, 1.0]
  random_erasing: 0.5
  batch_size: 4
  workers: {workers}
optim:
  name: {optim}
  lr: 0.01
schedule:
  epochs: 2
  warmup_epochs: 0.5
run:
  out_dir: {out}
  deterministic: true
  progress: false
  threads: 1
  channels_last: false
"""


def make_folder(root: Path, classes: int = 2, train: int = 6, val: int = 3) -> Path:
    """root/{train,val}/c<k>/ of 40x40 JPEGs whose colour depends on the class."""
    rng = np.random.default_rng(0)
    for split, count in (("train", train), ("val", val)):
        for k in range(classes):
            folder = root / split / f"c{k}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                pixels = rng.integers(0, 60, (40, 40, 3), dtype=np.uint8)
                pixels[..., k % 3] += 150
                Image.fromarray(pixels).save(folder / f"{i}.jpg", quality=95)
    return root


def experiment(tmp_path: Path, out: str, overrides=(), optim: str = "sgd", workers: int = 0):
    root = tmp_path / "data"
    if not root.exists():
        make_folder(root)
    text = TINY.format(root=root, out=tmp_path / out, optim=optim, workers=workers)
    path = tmp_path / f"{out}.yaml"
    path.write_text(text)
    return load_experiment(path, list(overrides))


def params(path: Path) -> dict[str, torch.Tensor]:
    return read_checkpoint(path)["state_dict"]


def test_train_writes_checkpoints_logs_and_resumes_bit_for_bit(tmp_path):
    task, config = experiment(tmp_path, "full", ["run.keep_epochs=true", "ema.enabled=true"])
    metrics = Trainer(task, config).fit()
    out = tmp_path / "full"
    assert metrics["images"] == 6 and "ema_top1" in metrics
    for name in ("last.pt", "best.pt", "epoch_1.pt", "epoch_2.pt", "config.yaml", "summary.csv"):
        assert (out / name).is_file(), name
    assert list((out / "tb").glob("events.out.tfevents.*"))
    rows = list(csv.DictReader((out / "summary.csv").read_text().splitlines()))
    assert [r["epoch"] for r in rows] == ["1", "2"] and float(rows[1]["val_top1"]) >= 0
    ckpt = read_checkpoint(out / "last.pt")
    assert ckpt["experiment"] == config and ckpt["classes"] == ["c0", "c1"]
    assert ckpt["train_state"]["epoch"] == 2
    rebuilt = load_model(out / "last.pt")  # the model from the file alone
    assert rebuilt.config["heads"]["classification"]["num_classes"] == 2

    # "Interrupted" after epoch 1: a new run resumed from epoch_1.pt must end identical.
    task, config = experiment(
        tmp_path, "resumed", [f"run.resume={out / 'epoch_1.pt'}", "ema.enabled=true"]
    )
    Trainer(task, config).fit()
    a, b = params(out / "last.pt"), params(tmp_path / "resumed" / "last.pt")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed run differs from uninterrupted run"
    ema_a = read_checkpoint(out / "last.pt")["ema_state_dict"]
    ema_b = read_checkpoint(tmp_path / "resumed" / "last.pt")["ema_state_dict"]
    assert all(torch.equal(ema_a[k], ema_b[k]) for k in ema_a)
    # and the runs did train: the weights moved away from epoch 1's
    first = params(out / "epoch_1.pt")
    assert any(not torch.equal(first[k], a[k]) for k in a)


def test_resume_true_continues_in_place_and_options_run(tmp_path):
    overrides = [
        "optim.accum_steps=2",
        "optim.clip_grad_norm=1.0",
        "run.amp=bf16",
        "run.channels_last=true",
        "schedule.epochs=1",
        "optim.decay_norm_and_bias=true",
    ]
    task, config = experiment(tmp_path, "run", overrides, optim="adam", workers=1)
    trainer = Trainer(task, config)
    assert trainer.steps_per_epoch == 1 and trainer.batches_per_epoch == 2
    trainer.fit()
    task, config = experiment(
        tmp_path,
        "run",
        [*overrides, "schedule.epochs=2", "run.resume=true"],
        optim="adam",
        workers=1,
    )
    trainer = Trainer(task, config)
    assert trainer.start_epoch == 1
    # training on: the longer schedule.epochs is the schedule now, not the checkpoint's 1 epoch
    # (whose cosine ended at step 1 at the floor); the lr at the resumed step is the new one's
    factor = trainer.scheduler.lr_lambdas[0]
    assert factor.total == 2 * trainer.steps_per_epoch
    lr = trainer.optimizer.param_groups[0]["lr"]
    assert lr == pytest.approx(0.01 * factor(trainer.scheduler.last_epoch)) and lr > 0.004
    trainer.fit()
    rows = list(csv.DictReader((tmp_path / "run" / "summary.csv").read_text().splitlines()))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    # a fresh run into the same folder starts its own summary, not rows after the old ones
    task, config = experiment(tmp_path, "run", overrides, optim="adam", workers=1)
    Trainer(task, config).fit()
    rows = list(csv.DictReader((tmp_path / "run" / "summary.csv").read_text().splitlines()))
    assert [r["epoch"] for r in rows] == ["1"]


WRITER = """
import sys, torch
from selecsls.heads import build_classifier
from selecsls.tools.engine.checkpointing import TRAIN_STATE, save_checkpoint
model = build_classifier("selecsls42b", 10)
opt = torch.optim.SGD(model.parameters(), lr=0.1)
sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
scaler = torch.amp.GradScaler("cpu", enabled=False)
print("ready", flush=True)
while True:
    save_checkpoint(sys.argv[1], model, experiment={}, epoch=2, best=None, optimizer=opt,
                    scheduler=sched, scaler=scaler, ema=None, rng_states=[], metrics={})
"""


def test_killed_while_writing_leaves_previous_checkpoint_loadable(tmp_path):
    path = tmp_path / "last.pt"
    model = build_classifier("selecsls42b", 10)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    save_checkpoint(
        path,
        model,
        experiment={"x": 1},
        epoch=1,
        best=None,
        optimizer=opt,
        scheduler=sched,
        scaler=scaler,
        ema=None,
        rng_states=[],
        metrics={},
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "ready"
        deadline = time.time() + 60
        while not list(tmp_path.glob(".last.pt.*.tmp")) and time.time() < deadline:
            time.sleep(0.005)  # wait until a write is under way
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert list(tmp_path.glob(".last.pt.*.tmp")), "the kill did not land mid-write"
    ckpt = read_checkpoint(path)
    assert ckpt["train_state"]["epoch"] in (1, 2)  # the previous or a complete newer file
    load_model(path)


DIST_WORKER = """
import json, sys, torch, torch.distributed as dist
from selecsls.tools.engine.experiment import load_experiment
from selecsls.tools.engine.trainer import Trainer
task, config = load_experiment(sys.argv[1], sys.argv[3:])
trainer = Trainer(task, config)
metrics = trainer.fit()
flat = torch.cat([p.detach().flatten() for p in trainer.model.parameters()])
gathered = [torch.zeros_like(flat) for _ in range(dist.get_world_size())]
dist.all_gather(gathered, flat)
if dist.get_rank() == 0:
    same = all(torch.equal(gathered[0], g) for g in gathered)
    json.dump({"same": same, "world": dist.get_world_size(), "images": metrics["images"],
               "steps": trainer.steps_per_epoch, "finite": bool(torch.isfinite(flat).all())},
              open(sys.argv[2], "w"))
dist.destroy_process_group()
"""


def test_torchrun_two_processes_share_weights_and_count_each_val_image_once(tmp_path):
    root = make_folder(tmp_path / "data", classes=2, train=5, val=0)
    val = root / "val" / "c0"
    val.mkdir(parents=True, exist_ok=True)
    for i in range(7):  # N = 7: not divisible by the 2 processes
        Image.fromarray(np.full((40, 40, 3), 30 * i, np.uint8)).save(val / f"{i}.png")
    cfg = tmp_path / "dist.yaml"
    cfg.write_text(TINY.format(root=root, out=tmp_path / "dist", optim="sgd", workers=0))
    worker, result = tmp_path / "worker.py", tmp_path / "result.json"
    worker.write_text(DIST_WORKER)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2"]
    run_torchrun(
        [
            *torchrun,
            "--standalone",
            str(worker),
            str(cfg),
            str(result),
            "schedule.epochs=1",
            "data.batch_size=2",
            "run.deterministic=false",
            "eval.bn_recalibrate=2",  # 2 steps leave BN's running stats useless otherwise
        ]
    )
    out = json.loads(result.read_text())
    assert out == {"same": True, "world": 2, "images": 7, "steps": 2, "finite": True}
    ckpt = tmp_path / "dist" / "last.pt"
    assert ckpt.is_file()

    # tools/eval.py sharded over 2 processes: 7 images, each once, logits in dataset order
    scores, logits = tmp_path / "eval.json", tmp_path / "logits.npy"
    run_torchrun(
        [
            *torchrun,
            "--standalone",
            "-m",
            "selecsls.tools.eval",
            str(ckpt),
            "--data",
            str(root / "val"),
            "--batch-size",
            "2",
            "--workers",
            "0",
            "--json",
            str(scores),
            "--dump-logits",
            str(logits),
        ]
    )
    assert json.loads(scores.read_text())["images"] == 7
    rows = np.load(logits)
    assert rows.shape == (7, 2) and np.isfinite(rows).all()
    single = tmp_path / "single.npy"
    eval_main(
        [str(ckpt), "--data", str(root / "val"), "--workers", "0", "--dump-logits", str(single)]
    )
    # fp32 in other batch sizes and thread counts: rounding scales with the largest logits
    # (after two steps some reach ~300), so the tolerance does too
    np.testing.assert_allclose(np.load(single), rows, rtol=0, atol=1e-5 * np.abs(rows).max())


def test_torchrun_rank_with_only_unreadable_images_keeps_step(tmp_path):
    """Under DDP a rank whose batch is (nearly) all unreadable files must still take part in the
    step (every rank's backward meets in the gradient all-reduce) without spoiling the losses.
    Half the training files are unreadable, batches hold 2 images: a batch may keep 2, 1 (too
    few for the classifier's BatchNorm) or 0, also a rank's first batch."""
    root = make_folder(tmp_path / "data", classes=2, train=8, val=2)
    for path in (root / "train" / "c1").glob("*.jpg"):
        path.write_bytes(b"not an image")
    cfg = tmp_path / "dist.yaml"
    cfg.write_text(TINY.format(root=root, out=tmp_path / "dist", optim="sgd", workers=0))
    worker, result = tmp_path / "worker.py", tmp_path / "result.json"
    worker.write_text(DIST_WORKER)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2"]
    overrides = ["schedule.epochs=2", "data.batch_size=2", "run.deterministic=false"]
    run_torchrun([*torchrun, "--standalone", str(worker), str(cfg), str(result), *overrides])
    out = json.loads(result.read_text())
    assert out["same"] and out["finite"] and out["steps"] == 4
    with open(tmp_path / "dist" / "summary.csv") as f:
        losses = [float(row["train_loss"]) for row in csv.DictReader(f)]
    assert len(losses) == 2 and np.isfinite(losses).all(), losses  # unusable batches left out


def test_classifier_batch_of_one_is_refused_clearly(tmp_path):
    with pytest.raises(ValueError, match="data.batch_size: 1 is too small"):
        experiment(tmp_path, "one", ["data.batch_size=1"])


def run_torchrun(cmd: list[str]) -> None:
    """Run a torchrun command in its own session, so that a hang kills the workers too.

    PYTHONFAULTHANDLER makes a worker that dies of a signal print every thread's Python stack,
    and a failure shows both streams' tails: where a crash happened (in training, in the
    process-group teardown, at interpreter exit) tells a fault of ours from PyTorch's.
    A worker killed by a signal gets one rerun, with a warning that carries its output: CI once
    saw a rank abort inside PyTorch ("terminate called without an active exception") that about
    a hundred reruns on AVX2 and AMX machines did not repeat. An error of ours (a Python
    exception: exit code 1), a hang or a crash that happens twice still fails.
    """
    for attempt in (1, 2):
        code, stdout, stderr = _torchrun_once(cmd)
        if code == 0:
            return
        signal_death = _root_cause_signal(stderr)
        if attempt == 1 and signal_death:
            note = f"torchrun worker died of signal {signal_death}, rerunning once:\n"
            warnings.warn(note + stderr[-6000:], stacklevel=2)
            continue
        pytest.fail(f"torchrun exited with {code}\nstdout:\n{stdout[-2000:]}\n"
                    f"stderr:\n{stderr[-8000:]}")  # fmt: skip


def _torchrun_once(cmd: list[str]) -> tuple[int, str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONFAULTHANDLER": "1"}
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        start_new_session=True,
    )  # fmt: skip
    try:
        stdout, stderr = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail("torchrun did not finish in 240 s")
    return proc.returncode, stdout, stderr


def _root_cause_signal(stderr: str) -> int | None:
    """The signal that killed the worker torchrun names as the root cause (None: not a signal).

    torchrun reports it as `exitcode  : -6 (pid: 123)` under "Root Cause"; a Python exception
    in a worker is exit code 1."""
    _, found, cause = stderr.rpartition("Root Cause")
    match = re.search(r"exitcode\s*:\s*(-?\d+)", cause) if found else None
    return -int(match.group(1)) if match and int(match.group(1)) < 0 else None


# the ends of torchrun's reports (torch 2.14) for a rank killed by SIGABRT and one that exited 3
ABORT_REPORT = """Failures:
  <NO_OTHER_FAILURES>
Root Cause (first observed failure):
[0]:
  rank      : 1 (local_rank: 1)
  exitcode  : -6 (pid: 17641)  (SIGABRT)
  traceback : Signal 6 (SIGABRT) received by PID 17641
"""
EXIT_REPORT = ABORT_REPORT.replace("-6 (pid: 17641)  (SIGABRT)", "3 (pid: 17658)")


def test_only_a_worker_killed_by_a_signal_gets_a_rerun():
    assert _root_cause_signal(ABORT_REPORT) == 6
    assert _root_cause_signal(EXIT_REPORT) is None  # a Python error of ours: no second chance
    assert _root_cause_signal("Traceback ...\nValueError: exitcode: -6") is None  # no report


def test_torchrun_rerun_happens_once(tmp_path):
    """Rank 1 aborts while `marker` is missing and creates it: the rerun passes with a warning;
    a worker that aborts every time fails the test."""
    marker, worker = tmp_path / "aborted_once", tmp_path / "worker.py"
    worker.write_text(
        "import os, pathlib, sys\n"
        "marker = pathlib.Path(sys.argv[1])\n"
        "if os.environ['RANK'] == '1' and (sys.argv[2] == 'always' or not marker.exists()):\n"
        "    marker.touch()\n"
        "    os.abort()\n"
    )
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2"]
    with pytest.warns(UserWarning, match="died of signal 6, rerunning once"):
        run_torchrun([*torchrun, "--standalone", str(worker), str(marker), "once"])
    with pytest.raises(pytest.fail.Exception, match="SIGABRT"), pytest.warns(UserWarning):
        run_torchrun([*torchrun, "--standalone", str(worker), str(marker), "always"])


def test_epochs_without_evaluation_report_no_stale_metrics(tmp_path, capsys):
    task, config = experiment(tmp_path, "every2", ["schedule.epochs=3", "eval.every=2"])
    Trainer(task, config).fit()
    rows = list(csv.DictReader((tmp_path / "every2" / "summary.csv").read_text().splitlines()))
    assert [r["val_top1"] != "" for r in rows] == [False, True, True]  # epoch 3 is the last
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("epoch ")]
    assert len(lines) == 3 and "top1" not in lines[0] and "top1" in lines[1]
    assert ", ," not in lines[0]


def test_fp16_grad_scaler_path_trains_and_resumes(tmp_path):
    """run.amp=fp16 (meant for CUDA) through its GradScaler path, on the CPU: scaled backward,
    unscale before clipping, accumulation, scaler state in the checkpoint and back on resume."""
    overrides = ["run.amp=fp16", "optim.accum_steps=2", "optim.clip_grad_norm=1.0"]
    overrides += ["data.batch_size=2"]  # 3 optimizer steps an epoch
    task, config = experiment(tmp_path, "fp16", [*overrides, "schedule.epochs=1"], optim="adam")
    trainer = Trainer(task, config)
    assert trainer.scaler.is_enabled()
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.fit()
    checkpoint = read_checkpoint(tmp_path / "fp16" / "last.pt")
    scale = checkpoint[TRAIN_STATE]["scaler"]["scale"]
    assert scale > 0
    after = checkpoint["state_dict"]
    assert all(torch.isfinite(v.float()).all() for v in after.values())
    assert any(
        not torch.equal(before[k], after[k]) for k in before if before[k].is_floating_point()
    )
    task, config = experiment(
        tmp_path, "fp16", [*overrides, "schedule.epochs=2", "run.resume=true"], optim="adam"
    )
    resumed = Trainer(task, config)
    assert resumed.start_epoch == 1 and resumed.scaler.get_scale() == scale


@pytest.mark.parametrize("native", [True, False])
def test_amp_auto_resolves_for_the_machine(tmp_path, monkeypatch, capsys, native):
    monkeypatch.setattr(amp, "cpu_has_bf16", lambda: native)
    task, config = experiment(tmp_path, "auto", ["run.amp=auto"])
    trainer = Trainer(task, config)
    assert trainer.amp_dtype == (torch.bfloat16 if native else None)
    assert f"run.amp=auto: {'bf16' if native else 'none'} on cpu" in capsys.readouterr().out
    task, config = experiment(tmp_path, "bf16", ["run.amp=bf16"])
    assert Trainer(task, config).amp_dtype == torch.bfloat16  # an explicit choice is kept
    assert ("AVX-512 BF16 / AMX" in capsys.readouterr().out) != native  # warned where slow
