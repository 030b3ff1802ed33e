"""Layers point down: an app imports only apps on a lower level, never one above it nor a sibling
on its own level (tests may reach anywhere)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.servers import ROOT

# Levels, lowest first; the apps on one level are siblings and never import each other.
# `core` is the ground floor (no app of ours). `notifications` and `dashboard` both build on
# billing; the staff customer page shows notifications' part through its template tags, not an
# import. `demo` seeds data through every app, so it sits above them all.
LAYERS = [
    ["core"], ["outbox"], ["plans"], ["accounts"], ["metering"], ["billing"],
    ["notifications", "dashboard"],
    ["demo"],
]


def level_of(layers: list[list[str]]) -> dict[str, int]:
    return {app: level for level, apps in enumerate(layers) for app in apps}


def breaches(layers: list[list[str]], imports: dict[str, dict[str, set[str]]]) -> list[str]:
    """Each import of an app on the importer's own level or above. `imports` maps an app to its
    modules and the apps each one imports."""
    level = level_of(layers)
    found = []
    for app, modules in imports.items():
        for module, names in sorted(modules.items()):
            bad = sorted(name for name in names if name != app and name in level and level[name] >= level[app])
            if bad:
                found.append(f"{module} imports {bad}")
    return found


def _imported_apps(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def _app_modules(app: str) -> list[Path]:
    return [p for p in (ROOT / app).rglob("*.py") if "tests" not in p.relative_to(ROOT).parts]


APPS = [app for app in level_of(LAYERS) if (ROOT / app).is_dir()]


@pytest.mark.parametrize("app", APPS)
def test_an_app_imports_only_apps_on_lower_levels(app):
    imports = {app: {str(path.relative_to(ROOT)): _imported_apps(path) for path in _app_modules(app)}}
    assert breaches(LAYERS, imports) == []


def test_the_layer_list_knows_every_app():
    apps = {p.parent.name for p in ROOT.glob("*/apps.py")}
    assert apps <= set(level_of(LAYERS)), f"add {sorted(apps - set(level_of(LAYERS)))} to LAYERS"


def test_notifications_and_dashboard_are_siblings():
    level = level_of(LAYERS)
    assert level["notifications"] == level["dashboard"] > level["billing"]


# The checker itself, on a made-up project: what it must refuse and what it must let through.
TOY = [["base"], ["left", "right"], ["top"]]


@pytest.mark.parametrize("app, names, expected", [
    ("left", {"base", "django"}, []),  # below, and no app of ours
    ("top", {"left", "right", "base"}, []),
    ("left", {"left"}, []),  # itself
    ("left", {"right"}, ["left/x.py imports ['right']"]),  # a sibling
    ("right", {"left"}, ["right/x.py imports ['left']"]),
    ("base", {"top", "left"}, ["base/x.py imports ['left', 'top']"]),  # upwards
])
def test_the_checker_refuses_siblings_and_higher_apps(app, names, expected):
    assert breaches(TOY, {app: {f"{app}/x.py": names}}) == expected


@pytest.mark.parametrize("app, source, sibling", [
    ("dashboard", "from notifications.models import UsageAlert\n", "notifications"),
    ("notifications", "def f():\n    import dashboard.timeline\n", "dashboard"),
])
def test_a_sibling_import_in_a_real_app_is_caught(tmp_path, app, source, sibling):
    module = tmp_path / "module.py"
    module.write_text(source)

    assert breaches(LAYERS, {app: {"module.py": _imported_apps(module)}}) == [f"module.py imports ['{sibling}']"]
