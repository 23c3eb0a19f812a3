"""What README.md and docs/ tell a user to run exists: every `python -m selecsls...` command they
show answers --help, and the README's Python blocks are formatted as ruff would write them."""

from __future__ import annotations

import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
COMMAND = re.compile(r"-m (selecsls(?:\.[a-z_0-9]+)+)(?![.\w])")  # not NAME placeholders
PYTHON_BLOCK = re.compile(r"```python\n(.*?)```", re.S)


def documented_modules() -> dict[str, str]:
    """{module: the first document that shows `python -m module`}."""
    found: dict[str, str] = {}
    for path in DOCUMENTS:
        for module in COMMAND.findall(path.read_text()):
            found.setdefault(module, path.name)
    return found


def help_of(module: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", module, "--help"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)


def test_every_documented_command_answers_help():
    modules = documented_modules()
    # the main commands must be among them, or the collection itself is broken
    for name in ("train", "eval", "demo", "benchmark", "prune", "export", "showcase"):
        assert f"selecsls.tools.{name}" in modules
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = dict(zip(modules, pool.map(help_of, modules)))
    failed = {
        f"{module} (in {modules[module]})": (r.returncode, r.stderr[-500:])
        for module, r in results.items()
        if r.returncode != 0 or "usage" not in r.stdout.lower()
    }
    assert not failed


def test_collection_catches_a_command_that_does_not_exist():
    assert help_of("selecsls.tools.no_such_command").returncode != 0


@pytest.mark.parametrize(
    "index", range(len(PYTHON_BLOCK.findall((ROOT / "README.md").read_text())))
)
def test_readme_python_blocks_are_ruff_formatted(index):
    block = PYTHON_BLOCK.findall((ROOT / "README.md").read_text())[index]
    cmd = [sys.executable, "-m", "ruff", "format", "--check", "--stdin-filename", "block.py", "-"]
    result = subprocess.run(cmd, input=block, capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def broken_links(path: Path) -> list[str]:
    """Relative links and images of a markdown file whose target does not exist."""
    targets = LINK.findall(path.read_text())
    local = [t for t in targets if not re.match(r"[a-z]+://|mailto:", t)]
    return [t for t in local if not (path.parent / t).exists()]


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: p.name)
def test_relative_links_resolve(document):
    assert not broken_links(document)


def test_link_check_catches_a_missing_target(tmp_path):
    page = tmp_path / "page.md"
    (tmp_path / "there.png").write_bytes(b"")
    page.write_text("![a](there.png) [b](docs/missing.md#part) [c](https://example.org/x)")
    assert broken_links(page) == ["docs/missing.md"]
