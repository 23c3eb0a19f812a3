"""setup.cfg installs every package of the tree: a folder with an __init__.py that the
`packages` list forgets works in the editable install and is missing from a wheel."""

from __future__ import annotations

import configparser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOP_LEVEL = ("backbones", "heads", "datasets", "tools", "configs")


def listed_packages() -> set[str]:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    return set(config["options"]["packages"].split())


def tree_packages() -> set[str]:
    found = set()
    for top in TOP_LEVEL:
        for init in (ROOT / top).rglob("__init__.py"):
            parts = init.parent.relative_to(ROOT).parts
            found.add(".".join(("selecsls", *parts)))
    return found


def test_every_package_folder_is_installed():
    missing = tree_packages() - listed_packages()
    assert not missing, f"add to setup.cfg [options] packages: {sorted(missing)}"
    assert "selecsls.heads.pose2d" in tree_packages()  # the walk itself finds nested ones
