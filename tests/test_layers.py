"""Layers point down: a lower app never imports a higher one (tests may reach anywhere)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.servers import ROOT

# Lowest first. `core` is the ground floor (no app of ours); `demo` seeds data through every app,
# so it sits above them all.
LAYERS = ["core", "outbox", "plans", "accounts", "metering", "billing", "notifications", "dashboard", "demo"]


def _imported_apps(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names & set(LAYERS)


def _app_modules(app: str) -> list[Path]:
    return [p for p in (ROOT / app).rglob("*.py") if "tests" not in p.relative_to(ROOT).parts]


@pytest.mark.parametrize("app", [app for app in LAYERS if (ROOT / app).is_dir()])
def test_an_app_imports_only_apps_below_it(app):
    higher = set(LAYERS[LAYERS.index(app) + 1:])
    offenders = {
        f"{path.relative_to(ROOT)} imports {sorted(_imported_apps(path) & higher)}"
        for path in _app_modules(app) if _imported_apps(path) & higher
    }
    assert not offenders


def test_the_layer_list_knows_every_app():
    apps = {p.parent.name for p in ROOT.glob("*/apps.py")}
    assert apps <= set(LAYERS), f"add {sorted(apps - set(LAYERS))} to LAYERS"
