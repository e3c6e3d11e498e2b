"""The docs name every hook and every setting (they fail when something is added undocumented)."""

from __future__ import annotations

import inspect
from pathlib import Path

from botbridge import hookspecs
from botbridge.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def test_every_hook_is_in_the_plugin_guide() -> None:
    guide = (ROOT / "docs" / "plugins.md").read_text()
    hooks = [
        name for name, value in inspect.getmembers(hookspecs, inspect.isfunction) if hasattr(value, "botbridge_spec")
    ]
    assert hooks
    for name in hooks:
        assert f"`{name}(" in guide, f"hook {name} is missing from docs/plugins.md"


def test_every_setting_is_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    for name in Settings.model_fields:
        assert f"`BOTBRIDGE_{name.upper()}`" in readme, f"BOTBRIDGE_{name.upper()} is missing from the README"
