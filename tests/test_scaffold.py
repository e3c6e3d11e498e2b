"""`botbridge new-plugin` writes a plugin that installs, is discovered, and passes its own tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize(
    ("kind", "provides"), [("channel", "channels"), ("bot", "connector_types"), ("store", "store_schemes")]
)
def test_new_plugin_installs_and_passes_its_tests(tmp_path: Path, kind: str, provides: str) -> None:
    name = f"acme_{kind}"
    created = run(
        sys.executable, "-m", "botbridge.cli", "new-plugin", name, "--kind", kind, "--dest", str(tmp_path), cwd=tmp_path
    )
    assert created.returncode == 0, created.stderr
    plugin = tmp_path / name
    site = tmp_path / "site"
    installed = run(
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--no-deps",
        "--disable-pip-version-check",
        "--target",
        str(site),
        str(plugin),
        cwd=tmp_path,
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    env = {"PYTHONPATH": str(site)}
    tests = run(sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests", cwd=plugin, env=env)
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert " passed" in tests.stdout
    listed = run(
        sys.executable,
        "-m",
        "botbridge.cli",
        "plugins",
        "--json",
        cwd=tmp_path,
        env={**env, "BOTBRIDGE_LOAD_PLUGINS": name},
    )
    info = {p["name"]: p for p in json.loads(listed.stdout)}[name]
    assert info["distribution"] == f"botbridge-{name.replace('_', '-')}"
    assert info[provides] and not info["errors"]
    lint = run(
        sys.executable, "-m", "ruff", "check", "--config", str(ROOT / "pyproject.toml"), str(plugin), cwd=tmp_path
    )
    assert lint.returncode == 0, lint.stdout


def test_bad_names_and_existing_folders_are_refused(tmp_path: Path) -> None:
    bad = run(
        sys.executable,
        "-m",
        "botbridge.cli",
        "new-plugin",
        "Bad-Name",
        "--kind",
        "bot",
        "--dest",
        str(tmp_path),
        cwd=tmp_path,
    )
    assert bad.returncode == 2 and "name" in bad.stderr
    (tmp_path / "taken").mkdir()
    taken = run(
        sys.executable,
        "-m",
        "botbridge.cli",
        "new-plugin",
        "taken",
        "--kind",
        "bot",
        "--dest",
        str(tmp_path),
        cwd=tmp_path,
    )
    assert taken.returncode == 2 and "exists" in taken.stderr
