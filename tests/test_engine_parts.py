"""Engine pieces in isolation: schedule, optimisers, sampler sharding, EMA, BN recalibration."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from selecsls.tools.engine.distributed import DistInfo, ShardedSampler
from selecsls.tools.engine.ema import ModelEma
from selecsls.tools.engine.optim import WarmupCosine, build_optimizer, param_groups
from selecsls.tools.engine.precise_bn import recalibrate_bn

OPTIM = {
    "name": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 0.1,
    "betas": [0.9, 0.999], "eps": 1e-8, "decay_norm_and_bias": True,
}  # fmt: skip


def test_warmup_then_cosine_to_floor():
    f = WarmupCosine(total_steps=110, warmup_steps=10, start=0.1, floor=0.01, cosine=True)
    assert f(0) == pytest.approx(0.1)
    assert f(5) == pytest.approx(0.55)
    assert f(10) == pytest.approx(1.0)
    assert f(60) == pytest.approx(0.01 + 0.99 * 0.5)
    assert f(110) == pytest.approx(0.01) and f(500) == pytest.approx(0.01)
    steps = [f(s) for s in range(10, 111)]
    assert all(a >= b for a, b in zip(steps, steps[1:]))
    assert WarmupCosine(100, 0, 1.0, 0.0, cosine=False)(70) == 1.0


def test_adam_couples_l2_into_the_gradient_adamw_does_not():
    # With a zero loss gradient, Adam's coupled L2 gradient wd*w is normalised by its own
    # second moment, so the first step moves every weight by ~lr; AdamW moves it by lr*wd*w.
    def first_step(name: str) -> torch.Tensor:
        layer = nn.Linear(4, 4, bias=False)
        nn.init.constant_(layer.weight, 2.0)
        opt = build_optimizer(layer, {**OPTIM, "name": name, "lr": 0.01})
        (layer.weight * 0).sum().backward()
        opt.step()
        return 2.0 - layer.weight.detach()

    assert torch.allclose(first_step("adam"), torch.full((4, 4), 0.01), atol=1e-5)
    assert torch.allclose(first_step("adamw"), torch.full((4, 4), 0.01 * 0.1 * 2.0), atol=1e-6)
    sgd = build_optimizer(nn.Linear(2, 2), OPTIM)
    assert isinstance(sgd, torch.optim.SGD) and sgd.defaults["nesterov"]


def test_bn_and_bias_excluded_from_decay_unless_asked():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    groups = param_groups(model, 0.1, decay_norm_and_bias=False)
    assert [len(g["params"]) for g in groups] == [1, 3]
    assert groups[1]["weight_decay"] == 0.0
    assert len(param_groups(model, 0.1, True)[0]["params"]) == 4


@pytest.mark.parametrize("length", [7, 10, 1])
def test_sharded_sampler_eval_counts_each_index_once_train_pads(length):
    world = 3
    shards = [
        list(ShardedSampler(length, DistInfo(r, world), shuffle=False, pad=False))
        for r in range(world)
    ]
    assert sorted(i for s in shards for i in s) == list(range(length))
    assert [
        len(ShardedSampler(length, DistInfo(r, world), False, pad=False)) for r in range(3)
    ] == [len(s) for s in shards]
    train = [ShardedSampler(length, DistInfo(r, world), shuffle=True, seed=3) for r in range(3)]
    for s in train:
        s.set_epoch(2)
    lists = [list(s) for s in train]
    assert {len(x) for x in lists} == {math.ceil(length / world)}
    assert set().union(*lists) == set(range(length))
    train[0].set_epoch(3)
    if length > 2:
        assert list(train[0]) != lists[0] or list(train[1]) != lists[1]


def test_ema_follows_weights_with_warmup_and_restores():
    model = nn.Linear(2, 1)
    ema = ModelEma(model, decay=0.9, warmup=True)
    with torch.no_grad():
        model.weight.add_(1.0)
    before = ema.module.weight.clone()
    ema.update(model)  # first update: decay min(0.9, 1/10) = 0.1
    expected = 0.1 * before + 0.9 * model.weight.detach()
    assert torch.allclose(ema.module.weight, expected)
    clone = ModelEma(nn.Linear(2, 1), decay=0.9)
    clone.load_state_dict(ema.state_dict())
    assert clone.updates == 1 and torch.equal(clone.module.weight, ema.module.weight)


class _BatchTask:
    def to_device(self, batch, device, train, channels_last):
        return batch

    def batch_size(self, batch):
        return len(batch["images"])


def test_bn_recalibration_averages_batch_statistics():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4)).eval()
    batches = [{"images": torch.randn(8, 3, 5, 5) * 3 + 2} for _ in range(3)]
    used = recalibrate_bn(model, batches, _BatchTask(), 2, DistInfo(), None, False)
    assert used == 2 and not model.training
    with torch.no_grad():
        feats = [model[0](b["images"]) for b in batches[:2]]
    means = torch.stack([f.mean((0, 2, 3)) for f in feats]).mean(0)
    assert torch.allclose(model[1].running_mean, means, atol=1e-5)
    assert model[1].momentum == 0.1


def test_summary_csv_widens_when_metrics_first_appear(tmp_path):
    import csv

    from selecsls.tools.engine.logs import RunLog

    log = RunLog(tmp_path, True, False)
    log.summary_row({"epoch": 1, "train_loss": 2.5})
    log.summary_row({"epoch": 2, "train_loss": 1.5, "val_AP": 0.25})
    log.summary_row({"epoch": 3, "train_loss": 1.0})
    log.close()
    rows = list(csv.DictReader((tmp_path / "summary.csv").read_text().splitlines()))
    assert [r["epoch"] for r in rows] == ["1", "2", "3"]
    assert [r["val_AP"] for r in rows] == ["", "0.25", ""]
    assert rows[0]["train_loss"] == "2.5"
