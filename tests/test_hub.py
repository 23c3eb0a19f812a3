"""Published weights by name: downloaded once from a server on 127.0.0.1, cached, checked."""

from __future__ import annotations

import functools
import hashlib
import http.server
import threading
from pathlib import Path

import pytest
import torch

from selecsls.backbones import hub
from selecsls.backbones.checkpoint import CheckpointError
from selecsls.heads import build_classifier, export_state_dict, load_model


@pytest.fixture
def weight_server(tmp_path, monkeypatch):
    """A local HTTP server over a folder, with the cache and mirror pointed at it."""
    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("SELECSLS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("SELECSLS_WEIGHTS_MIRROR", f"http://127.0.0.1:{server.server_port}/")
    yield served
    server.shutdown()
    server.server_close()


def test_published_seed_weights_download_once_and_load(weight_server, tmp_path):
    model = build_classifier("selecsls42b").eval()
    torch.save(export_state_dict(model, "seed"), weight_server / "SelecSLS42_B_statedict.pth")
    loaded = load_model("selecsls42b.seed").eval()
    cached = tmp_path / "cache" / "SelecSLS42_B_statedict.pth"
    assert cached.is_file()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded(x)["logits"], model(x)["logits"])
    # a second use reads the cache: it works with the server's file gone
    (weight_server / "SelecSLS42_B_statedict.pth").unlink()
    assert load_model("selecsls42b.seed").config["backbone"] == "selecsls42b"


def test_hash_mismatch_is_rejected_and_nothing_is_cached(weight_server, tmp_path):
    # timm's file name promises a SHA-256 prefix that this stand-in file does not have
    torch.save({"w": torch.ones(1)}, weight_server / "selecsls60-bbf87526.pth")
    with pytest.raises(CheckpointError, match="integrity check"):
        load_model("selecsls60.timm")
    assert not (tmp_path / "cache" / "selecsls60-bbf87526.pth").exists()


def test_missing_file_on_server_is_a_clear_error(weight_server):
    with pytest.raises(CheckpointError, match="could not download .*SelecSLS84_statedict.pth"):
        load_model("selecsls84.seed")


def test_file_url_mirror_with_matching_hash(tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    source = tmp_path / "w.pth"
    torch.save(export_state_dict(build_classifier("selecsls60b"), "timm"), source)
    digest = hashlib.sha256(source.read_bytes()).hexdigest()[:8]
    name = f"selecsls60b-{digest}.pth"
    source.rename(mirror / name)
    entry = hub.PUBLISHED["selecsls60b.timm"]
    fake = hub.Published(entry.backbone, f"https://example.invalid/{name}", 1.0, 2.0, "test")
    monkeypatch.setitem(hub.PUBLISHED, "selecsls60b.test", fake)
    monkeypatch.setenv("SELECSLS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("SELECSLS_WEIGHTS_MIRROR", mirror.as_uri())
    model = load_model("selecsls60b.test")
    assert model.config["backbone"] == "selecsls60b"
    assert (tmp_path / "cache" / name).is_file()


def test_unknown_published_name_lists_valid_ones():
    with pytest.raises(CheckpointError, match="valid names: selecsls60.seed"):
        hub.published_entry("selecsls61.seed")
    assert set(hub.PUBLISHED) >= {"selecsls60.seed_better", "selecsls42b.timm", "selecsls84.seed"}


def test_readme_table_matches_the_published_entries():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    for name, entry in hub.PUBLISHED.items():
        row = f"| `{name}` | {entry.backbone} | [{entry.note}]({entry.url}) | "
        assert row + f"{entry.top1} / {entry.top5} |" in readme, name
