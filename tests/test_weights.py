"""Weight files: seed manifests load strictly, formats convert exactly, bad files fail clearly."""

from __future__ import annotations

import json
import os
import pickle

import pytest
import torch
from conftest import ALL_CONFIGS

from selecsls.backbones.checkpoint import CheckpointError, atomic_save, read_checkpoint
from selecsls.heads import (
    build_classifier,
    convert_keys,
    detect_format,
    export_state_dict,
    load_model,
    load_weights,
    save_model,
)

SEED_MANIFEST_NAMES = {
    "selecsls42": "SelecSLS42",
    "selecsls42b": "SelecSLS42_B",
    "selecsls60": "SelecSLS60",
    "selecsls60b": "SelecSLS60_B",
    "selecsls84": "SelecSLS84",
    "selecsls102": "SelecSLS102",
}


def manifest_state_dict(shared_data, name: str) -> tuple[dict, dict]:
    """A random state dict shaped exactly as the seed's file for `name`, and the manifest."""
    path = shared_data / "selecsls_original_keys" / f"{SEED_MANIFEST_NAMES[name]}.json"
    manifest = json.loads(path.read_text())
    gen = torch.Generator().manual_seed(0)
    state = {
        k: torch.tensor(7) if not shape else torch.randn(shape, generator=gen)
        for k, shape in manifest.items()
    }
    return state, manifest


@pytest.mark.parametrize("name", ALL_CONFIGS)
def test_seed_manifest_loads_strictly_and_exports_back(shared_data, tmp_path, name):
    state, manifest = manifest_state_dict(shared_data, name)
    path = tmp_path / "seed.pth"
    torch.save(state, path)
    # the architecture is inferred from the shapes alone: the seed's files name none
    model = load_model(path)
    assert model.config["backbone"] == name
    ours = model.state_dict()
    for key, value in convert_keys(state, "seed", "selecsls").items():
        assert torch.equal(ours[key], value), key
    exported = export_state_dict(model, "seed")
    assert {k: list(v.shape) for k, v in exported.items()} == manifest
    assert all(torch.equal(exported[k], state[k]) for k in manifest)


def test_detect_format_and_timm_round_trip():
    model = build_classifier("selecsls42", num_classes=5)
    timm_state = export_state_dict(model, "timm")
    seed_state = export_state_dict(model, "seed")
    assert "fc.weight" in timm_state and "classifier.0.weight" in seed_state
    assert detect_format(timm_state) == "timm"
    assert detect_format(seed_state) == "seed"
    assert detect_format(model.state_dict()) == "selecsls"
    back = convert_keys(convert_keys(timm_state, "timm", "seed"), "seed", "selecsls")
    assert back.keys() == model.state_dict().keys()
    assert all(torch.equal(back[k], v) for k, v in model.state_dict().items())
    with pytest.raises(ValueError, match="unknown weight format 'onnx'"):
        convert_keys(timm_state, "timm", "onnx")


def test_own_checkpoint_rebuilds_alone(tmp_path):
    model = build_classifier("selecsls42b", num_classes=7).eval()
    path = save_model(model, tmp_path / "ckpt.pth", epoch=3)
    assert read_checkpoint(path)["epoch"] == 3
    again = load_model(path).eval()
    assert again.config == model.config
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(again(x)["logits"], model(x)["logits"])
    assert not list(tmp_path.glob(".*tmp")), "atomic save left a temporary file"


def test_training_dumps_and_ddp_prefixes_load(tmp_path):
    model = build_classifier("selecsls42", num_classes=4)
    wrapped = {"module." + k: v for k, v in export_state_dict(model, "timm").items()}
    torch.save({"epoch": 9, "state_dict": wrapped}, tmp_path / "timm_train.pth.tar")
    target = build_classifier("selecsls42", num_classes=4)
    load_weights(target, tmp_path / "timm_train.pth.tar")
    assert all(
        torch.equal(a, b) for a, b in zip(target.state_dict().values(), model.state_dict().values())
    )


def test_wrong_architecture_names_model_and_keys(tmp_path):
    torch.save(export_state_dict(build_classifier("selecsls42"), "seed"), tmp_path / "w42.pth")
    with pytest.raises(CheckpointError) as info:
        load_weights(build_classifier("selecsls60"), tmp_path / "w42.pth")
    message = str(info.value)
    assert "w42.pth does not fit model selecsls60" in message
    assert "missing keys (backbone.features.6." in message
    assert "shape mismatches (" in message and "file (" in message
    assert "more)" in message  # long lists are cut, with the count


def test_unknown_architecture_is_reported(tmp_path):
    state = export_state_dict(build_classifier("selecsls42"), "seed")
    state["features.0.conv1.0.weight"] = torch.zeros(1, 3, 3, 3)
    torch.save(state, tmp_path / "odd.pth")
    with pytest.raises(CheckpointError, match="match none of the SelecSLS configurations"):
        load_model(tmp_path / "odd.pth")


def test_bad_files_give_clear_errors(tmp_path):
    good = tmp_path / "good.pth"
    torch.save(export_state_dict(build_classifier("selecsls42"), "seed"), good)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    text = tmp_path / "notes.txt"
    text.write_text("not weights\n")
    letter = tmp_path / "letter.txt"
    letter.write_text("e")  # torch's unpickler fails on this with a bare KeyError
    listing = tmp_path / "list.pth"
    torch.save([1, 2, 3], listing)
    evil = tmp_path / "evil.pth"
    evil.write_bytes(pickle.dumps(print))  # a pickle that would run code if unpickled fully
    empty = tmp_path / "empty_dict.pth"
    torch.save({"epoch": 1}, empty)
    cases = {
        truncated: "not a readable PyTorch checkpoint",
        text: "not a readable PyTorch checkpoint",
        letter: "not a readable PyTorch checkpoint",
        evil: "not a readable PyTorch checkpoint",
        listing: "holds a list, not a dict of weights",
        empty: "no state dict of tensors found",
        tmp_path / "missing.pth": "no such file",
    }
    for path, expected in cases.items():
        with pytest.raises(CheckpointError, match=expected) as info:
            load_model(path)
        assert str(path.name) in str(info.value)


def test_atomic_save_keeps_previous_file_on_failure(tmp_path):
    path = tmp_path / "ckpt.pth"
    atomic_save({"a": torch.ones(2)}, path)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        atomic_save({"a": Unpicklable()}, path)
    assert torch.equal(read_checkpoint(path)["a"], torch.ones(2))
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pth"]


def test_atomic_save_uses_umask_permissions(tmp_path):
    path = atomic_save({"a": torch.ones(1)}, tmp_path / "shared.pth")
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
