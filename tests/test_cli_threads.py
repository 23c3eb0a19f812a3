"""Default CPU threads of the eval command: the cores other jobs leave free (on 2 busy cores,
torch's default of 2 threads spin-waits: the pose eval fell from 5.6 to 0.2 images/s)."""

from __future__ import annotations

import pytest
import torch

from selecsls.tools import _cli
from selecsls.tools import eval as eval_tool


@pytest.mark.parametrize(
    ("cores", "load", "expected"),
    [(2, 0.1, 2), (2, 0.6, 1), (2, 2.0, 1), (2, 7.0, 1), (16, 3.4, 13), (1, 0.0, 1)],
)
def test_free_cores_follows_the_load(cores, load, expected):
    assert _cli.free_cores(cores, load) == expected


def test_machine_load_is_sane():
    cores, load = _cli.machine_load()
    assert cores >= 1 and load >= 0.0


@pytest.fixture
def keep_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_eval_default_leaves_busy_cores_alone(monkeypatch, capsys, keep_threads):
    monkeypatch.setattr(eval_tool, "machine_load", lambda: (2, 2.0))
    assert eval_tool.set_threads(None) == 1
    assert torch.get_num_threads() == 1
    assert "1 CPU thread(s): load 2.0 on 2 cores" in capsys.readouterr().err


def test_eval_threads_option_wins_and_is_checked(monkeypatch, capsys, keep_threads):
    monkeypatch.setattr(eval_tool, "machine_load", lambda: (2, 2.0))
    assert eval_tool.set_threads(2) == 2 and torch.get_num_threads() == 2
    assert capsys.readouterr().err == ""
    with pytest.raises(ValueError, match="--threads must be at least 1, got 0"):
        eval_tool.set_threads(0)
