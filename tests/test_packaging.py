"""What a pip user gets: wheels built from this repository, installed into fresh virtual environments.

The wheels are built once per run into a temporary folder, and every pip
call of the run shares one temporary cache: nothing is kept across runs.
Third-party dependencies come from the configured package index.
"""

from __future__ import annotations

import email.parser
import os
import subprocess
import sys
import tomllib
import venv
import zipfile
from collections.abc import Iterator
from email.message import Message
from pathlib import Path

import pytest

from botbridge.scaffold import core_requirement

ROOT = Path(__file__).resolve().parents[1]
REPOSITORY = "https://github.com/botbridge/botbridge"
MEMBERS = [ROOT / "core", *sorted(p.parent for p in (ROOT / "plugins").glob("*/pyproject.toml"))]

pytestmark = pytest.mark.slow


def clean_env(**extra: str) -> dict[str, str]:
    """The user's environment without botbridge settings or another Python's."""
    env = {
        key: value for key, value in os.environ.items() if not key.startswith(("BOTBRIDGE_", "PYTHON", "VIRTUAL_ENV"))
    }
    return {**env, "PIP_DISABLE_PIP_VERSION_CHECK": "1", **extra}


def run(
    *args: str | Path, cwd: Path | None = None, timeout: float = 300, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env or clean_env(), capture_output=True, text=True, timeout=timeout
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"{result.args}\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("packaging")


@pytest.fixture(scope="module")
def wheels(work: Path) -> dict[str, Path]:
    """One wheel per distribution of the repository, by distribution name."""
    out = work / "wheels"
    # The test tools carry hatchling: one build process for all, no isolated environment per wheel.
    ok(run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", out, *MEMBERS))
    built = {}
    for wheel in out.glob("*.whl"):
        built[metadata(wheel)["Name"]] = wheel
    names = {tomllib.loads((m / "pyproject.toml").read_text())["project"]["name"] for m in MEMBERS}
    assert set(built) == names
    return built


def metadata(wheel: Path) -> Message:
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        return email.parser.Parser().parsestr(archive.read(name).decode())


def fresh_venv(work: Path, name: str, *requirements: str | Path, with_pip: bool = False) -> Path:
    """A virtual environment with only `requirements` (and their dependencies) installed; its bin folder."""
    root = work / name
    venv.EnvBuilder(with_pip=with_pip).create(root)
    python = root / "bin" / "python"
    # The running pip installs into it (no pip of its own to set up); no .pyc ahead of time (botocore is large).
    pip = [
        sys.executable,
        "-m",
        "pip",
        "--python",
        python,
        "install",
        "-q",
        "--no-compile",
        "--cache-dir",
        work / "pip-cache",
    ]
    ok(run(*pip, *requirements, timeout=600))
    return root / "bin"


def test_every_wheel_carries_license_classifiers_urls_and_a_bounded_core(wheels: dict[str, Path]) -> None:
    license_text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in license_text and "Version 2.0, January 2004" in license_text
    core_version = metadata(wheels["botbridge"])["Version"]
    for name, wheel in wheels.items():
        meta = metadata(wheel)
        assert meta["License-Expression"] == "Apache-2.0", name
        with zipfile.ZipFile(wheel) as archive:
            licenses = [n for n in archive.namelist() if n.endswith(".dist-info/licenses/LICENSE")]
            assert licenses, f"{name}: no LICENSE in the wheel"
            assert archive.read(licenses[0]).decode() == license_text
            assert not [n for n in archive.namelist() if n.startswith("tests/")], f"{name} ships its tests"
        classifiers = meta.get_all("Classifier") or []
        assert "Programming Language :: Python :: 3.11" in classifiers and "Typing :: Typed" in classifiers, name
        urls = dict(u.split(", ", 1) for u in meta.get_all("Project-URL") or [])
        assert urls["Repository"] == REPOSITORY, name
        assert urls["Issues"] == f"{REPOSITORY}/issues", name
        assert urls["Documentation"].startswith(REPOSITORY), name
        if name == "botbridge":
            continue
        assert meta["Version"], name
        requires = [
            r for r in meta.get_all("Requires-Dist") or [] if r.split(";")[0].split("<")[0].split(">")[0] == "botbridge"
        ]
        bounds = sorted(requires[0].removeprefix("botbridge").split(","))
        assert bounds == sorted(core_requirement(core_version).removeprefix("botbridge").split(",")), name


def test_core_has_a_real_long_description(wheels: dict[str, Path]) -> None:
    description = metadata(wheels["botbridge"]).get_payload()
    assert isinstance(description, str)
    assert "pip install botbridge" in description
    assert "botbridge demo" in description and "botbridge serve" in description
    assert f"{REPOSITORY}#readme" in description


@pytest.fixture(scope="module")
def runtime(work: Path, wheels: dict[str, Path]) -> Path:
    """Core and every plugin from their wheels, no test tool."""
    return fresh_venv(work, "runtime", *wheels.values())


def test_from_wheels_alone_the_commands_work(runtime: Path, wheels: dict[str, Path]) -> None:
    assert run(runtime / "python", "-c", "import pytest").returncode != 0
    assert run(runtime / "python", "-c", "import hypothesis").returncode != 0
    versions = ok(run(runtime / "botbridge", "--version")).splitlines()
    assert sorted(versions) == sorted(f"{name} {metadata(wheel)['Version']}" for name, wheel in wheels.items())
    listing = ok(run(runtime / "botbridge", "plugins"))
    assert "ERROR" not in listing


def test_from_wheels_alone_the_demo_works_for_every_channel_and_bot(runtime: Path) -> None:
    # The nine demos run side by side: each is mostly waiting on loopback.
    pairs = [(channel, bot) for channel in ("scg", "sinch", "bird") for bot in ("directline", "lex", "dialogflow")]
    demos = {
        pair: subprocess.Popen(
            [runtime / "botbridge", "demo", "--channel", pair[0], "--bot", pair[1]],
            env=clean_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for pair in pairs
    }
    try:
        for pair, demo in demos.items():
            output, _ = demo.communicate(timeout=180)
            assert demo.returncode == 0, f"{pair}\n{output}"
            assert "🤖 bot → echo: Hi there!" in output and "🤖 bot → echo: sales" in output, f"{pair}\n{output}"
            assert "→ DELIVERED" in output, f"{pair}\n{output}"
    finally:  # one failing must not leave the others running into later tests
        for demo in demos.values():
            if demo.poll() is None:
                demo.kill()
                demo.communicate(timeout=10)


@pytest.fixture
def stranger(tmp_path: Path) -> Iterator[Path]:
    """A project that has nothing to do with botbridge."""
    (tmp_path / "test_unrelated.py").write_text("def test_arithmetic():\n    assert 1 + 1 == 2\n")
    yield tmp_path


def test_a_strangers_pytest_run_beside_botbridge_is_unaffected(
    work: Path, wheels: dict[str, Path], stranger: Path
) -> None:
    bin_ = fresh_venv(work, "stranger", wheels["botbridge"], "pytest")
    assert run(bin_ / "python", "-c", "import hypothesis").returncode != 0
    result = run(bin_ / "python", "-m", "pytest", "-q", "-p", "no:cacheprovider", cwd=stranger)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout
    # and core's fixtures are there for whoever asks for them
    (stranger / "test_clock.py").write_text(
        "def test_clock(fake_clock):\n    start = fake_clock.now()\n    fake_clock.advance(5)\n"
        "    assert fake_clock.now() == start + 5\n"
    )
    result = run(bin_ / "python", "-m", "pytest", "-q", "-p", "no:cacheprovider", cwd=stranger)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout
    # and its environment is its own: botbridge relaxes no outbound policy it did not ask for
    (stranger / "test_env.py").write_text(
        "import os\n\ndef test_env():\n    assert 'BOTBRIDGE_ALLOW_PRIVATE_URLS' not in os.environ\n"
        "    assert os.environ['BOTBRIDGE_OUTBOUND_ALLOW'] == '10.0.0.0/8'\n"
    )
    env = clean_env(BOTBRIDGE_OUTBOUND_ALLOW="10.0.0.0/8")
    result = run(bin_ / "python", "-m", "pytest", "-q", "-p", "no:cacheprovider", cwd=stranger, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 passed" in result.stdout


def quick_start_commands() -> list[str]:
    """The shell lines of the plugin guide's quick start, as an author copies them."""
    guide = (ROOT / "docs" / "plugins.md").read_text()
    block = guide.split("The quickest start:", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    return [line.split("#", 1)[0].strip() for line in block.splitlines() if line.strip()]


def test_the_plugin_guides_quick_start_works_as_written_in_a_fresh_venv(work: Path, wheels: dict[str, Path]) -> None:
    from botbridge.scaffold import quick_start

    commands = quick_start_commands()
    assert commands[0].startswith("botbridge new-plugin whatsapp_cloud")
    # new-plugin prints the same next step as the guide
    assert commands[1] == quick_start(Path("whatsapp_cloud"))
    # its own pip: the guide says `pip install`
    bin_ = fresh_venv(work, "author", wheels["botbridge"], with_pip=True)
    author = work / "author-project"
    author.mkdir()
    env_path = f"{bin_}{os.pathsep}{os.environ.get('PATH', '')}"
    for command in commands:
        result = subprocess.run(
            ["bash", "-c", f"PATH={env_path!r}; {command}"],
            cwd=author,
            env={
                **{k: v for k, v in os.environ.items() if not k.startswith(("BOTBRIDGE_", "VIRTUAL_ENV"))},
                "PIP_CACHE_DIR": str(work / "pip-cache"),  # the run's cache, not the user's
                "PIP_DISABLE_PIP_VERSION_CHECK": "1",
            },
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
    assert " passed" in result.stdout
