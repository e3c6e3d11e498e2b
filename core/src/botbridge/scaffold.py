"""`botbridge new-plugin NAME --kind channel|bot|store`: a complete plugin skeleton.

The skeleton is a working plugin: a channel with HMAC-signed webhooks and a
send API, or a bot with a session API, each with a strict fake of its
provider and core's contract suite as its tests; or a store that starts as
core's in-memory one. Rename, then replace the provider calls.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

KINDS = ("channel", "bot", "store")
NAME = re.compile(r"^[a-z][a-z0-9_]{1,30}$")

README = """# botbridge-{dist}

{title} for botbridge ({kind} plugin).

    pip install -e .          # next to botbridge
    botbridge plugins         # lists `{name}`
    pytest                    # the contract suite against the fake

Files: `src/botbridge_{name}/plugin.py` (the hooks), `{module}.py` (the
implementation), {testing}`tests/test_contract.py` (core's {kind} contract).
"""


def core_requirement(version: str | None = None) -> str:
    """`botbridge>=0.X,<0.Y`: the core API a plugin built against this core may rely on.

    Below 1.0 a minor release of core may change the plugin API, so a plugin
    is bounded to the minor series it was built for.
    """
    from botbridge import __version__

    major, minor = (int(part) for part in (version or __version__).split(".")[:2])
    upper = f"{major}.{minor + 1}" if major == 0 else f"{major + 1}"
    return f"botbridge>={major}.{minor},<{upper}"


def quick_start(root: Path) -> str:
    """Install a new plugin with its `[test]` extra, run its tests (docs/plugins.md says the same)."""
    return f"pip install -e '{root}[test]' && pytest {root}"


def _render(text: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", value)
    return text


def create_plugin(name: str, kind: str, destination: Path) -> Path:
    """Write the plugin into `destination/<name>`; return that folder."""
    if not NAME.match(name):
        raise ValueError("the name must be 2-31 characters of a-z, 0-9 and _, starting with a letter")
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}")
    root = destination / name
    if root.exists():
        raise FileExistsError(f"{root} already exists")
    values = {
        "name": name,
        "dist": name.replace("_", "-"),
        "Class": "".join(part.capitalize() for part in name.split("_")),
        "TYPE": name.upper(),
        "title": name.replace("_", " ").title(),
        "core_requirement": core_requirement(),
    }
    templates = resources.files("botbridge") / "templates"
    module = {"channel": "channel", "bot": "bot", "store": "store"}[kind]
    package = root / "src" / f"botbridge_{name}"
    (root / "tests").mkdir(parents=True)
    package.mkdir(parents=True)
    files = {
        root / "pyproject.toml": (templates / "common_pyproject.toml.tmpl").read_text(),
        package / f"{module}.py": (templates / kind / f"{module}.py.tmpl").read_text(),
        package / "plugin.py": (templates / kind / "plugin.py.tmpl").read_text(),
        root / "tests" / "test_contract.py": (templates / kind / "test_contract.py.tmpl").read_text(),
        package / "__init__.py": f'"""{values["title"]} for botbridge."""\n',
        package / "py.typed": "",
        root / "tests" / "__init__.py": "",
    }
    if kind != "store":
        files[package / "testing.py"] = (templates / kind / "testing.py.tmpl").read_text()
    testing = "`testing.py` (the strict fake), " if kind != "store" else ""
    files[root / "README.md"] = README.format(module=module, testing=testing, kind=kind, **values)
    for path, text in files.items():
        path.write_text(_render(text, values))
    return root
