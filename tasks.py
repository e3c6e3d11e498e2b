#!/usr/bin/env python3
"""One-command tasks that bootstrap their own environment.

    python3 tasks.py test     # lint, format and type checks, then the whole test suite
    python3 tasks.py demo     # the product working end to end (fakes on loopback)
    python3 tasks.py serve    # the host on 127.0.0.1:8000
    python3 tasks.py plugins  # what is installed

Needs only Python 3.11+: creates .venv, installs core and every plugin in the
repository (editable) with the test tools, and reinstalls when a
pyproject.toml changes.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
STAMP = VENV / ".bootstrap-stamp"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / ("python.exe" if os.name == "nt" else "python")
# Beside these, each member's own `test` extra (its test tools and the providers' official
# definitions its tests check requests against) is installed with it.
# hatchling: the packaging test builds every wheel in one process, without an isolated build environment each
# pytest-timeout: a test that hangs fails (pyproject's `timeout`) instead of holding CI
# playwright: drives the system's Chromium in the console's browser tests (never downloads a browser)
TEST_TOOLS = [
    "pytest>=8",
    "pytest-timeout>=2.3",
    "hypothesis>=6.100",
    "jsonschema>=4.20",
    "ruff>=0.6",
    "mypy>=1.10",
    "hatchling>=1.24",
    "playwright>=1.45",
]


def members() -> list[Path]:
    plugins = sorted(
        p for p in (ROOT / "plugins").glob("*") if (p / "pyproject.toml").exists() and not p.name.startswith("_")
    )
    return [ROOT / "core", *plugins]


def fingerprint() -> str:
    digest = hashlib.sha256(" ".join(TEST_TOOLS).encode())
    for member in members():
        digest.update(str(member.relative_to(ROOT)).encode())
        digest.update((member / "pyproject.toml").read_bytes())
    return digest.hexdigest()


def bootstrap() -> None:
    if sys.version_info < (3, 11):
        sys.exit("botbridge needs Python 3.11 or newer")
    if not PYTHON.exists():
        print("creating .venv …", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    wanted = fingerprint()
    if STAMP.exists() and STAMP.read_text() == wanted:
        return
    print("installing core, plugins and test tools into .venv …", flush=True)
    pip = [str(PYTHON), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    editable = [arg for member in members() for arg in ("-e", f"{member}[test]")]
    subprocess.run([*pip, *editable, *TEST_TOOLS], check=True)
    STAMP.write_text(wanted)


def run(*args: str) -> int:
    return subprocess.call([str(BIN / args[0]), *args[1:]], cwd=ROOT)


def main() -> int:
    task, *rest = sys.argv[1:] or ["help"]
    if task in ("help", "-h", "--help"):
        print(__doc__)
        return 0
    bootstrap()
    if task == "test":
        for check in (("ruff", "check", "."), ("ruff", "format", "--check", "."), ("mypy",)):
            status = run(*check)
            if status:
                return status
        status = run("pytest", *rest)
        return 0 if status == 5 else status  # 5: no tests collected
    if task in ("demo", "serve", "plugins"):
        return run("botbridge", task, *rest)
    if task == "bootstrap":
        return 0
    print(f"unknown task {task!r}\n{__doc__}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
