"""Discovery through entry points, and what happens to broken plugins."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from botbridge import BotBackend, Channel, hookimpl
from botbridge.plugins import Plugins
from botbridge.settings import Settings


@pytest.fixture
def fake_distributions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Install throwaway distributions (dist-info + modules) on sys.path."""
    monkeypatch.syspath_prepend(str(tmp_path))

    def dist(name: str, entry_points: str, modules: dict[str, str]) -> None:
        info = tmp_path / f"{name.replace('-', '_')}-1.2.3.dist-info"  # wheel naming: no dash in the name part
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.2.3\n")
        (info / "entry_points.txt").write_text("[botbridge]\n" + entry_points)
        for module, source in modules.items():
            (tmp_path / f"{module}.py").write_text(textwrap.dedent(source))

    dist(
        "botbridge-goodbot",
        "goodbot = bb_goodbot\n",
        {
            "bb_goodbot": """
                from botbridge import BotBackend, hookimpl
                class GoodBot(BotBackend):
                    type = "GOOD_BOT"
                @hookimpl
                def register_bot_backends(register):
                    register(GoodBot)
                @hookimpl
                def on_event(event):
                    pass
            """
        },
    )
    dist("botbridge-broken", "broken = bb_does_not_exist_anywhere\n", {})
    dist(
        "botbridge-typo",
        "typo = bb_typo\n",
        {
            "bb_typo": """
                from botbridge import hookimpl
                @hookimpl
                def register_channel(register):  # misspelled: register_channels
                    pass
            """
        },
    )
    dist(
        "botbridge-thief",
        "thief = bb_thief\n",
        {
            "bb_thief": """
                from botbridge import hookimpl
                @hookimpl
                def register_stores(register):
                    register("sqlite", lambda url, clock: None)  # core's scheme
                    register("thief", lambda url, clock: None)
            """
        },
    )
    return tmp_path


def test_entry_points_are_discovered_with_their_distribution(fake_distributions: Path) -> None:
    plugins = Plugins.discover(Settings())
    info = plugins.infos["goodbot"]
    assert info.distribution == "botbridge-goodbot"
    assert info.version == "1.2.3"
    assert info.connector_types == ["GOOD_BOT"]
    assert sorted(info.hooks) == ["on_event", "register_bot_backends"]
    assert info.kinds == ["bot", "observer"]
    assert "GOOD_BOT" in plugins.bot_backends
    # core's built-ins arrive the same way
    assert plugins.infos["sqlite"].builtin and plugins.infos["sqlite"].distribution == "botbridge"
    assert {"memory", "sqlite"} <= set(plugins.stores)


def test_a_plugin_that_fails_to_import_is_reported(fake_distributions: Path) -> None:
    plugins = Plugins.discover(Settings())
    errors = plugins.infos["broken"].errors
    assert errors and "bb_does_not_exist_anywhere" in errors[0]
    assert "GOOD_BOT" in plugins.bot_backends  # the others still load


def test_a_misspelled_hook_rejects_its_plugin(fake_distributions: Path) -> None:
    plugins = Plugins.discover(Settings())
    assert any("register_channel" in e for e in plugins.infos["typo"].errors)
    assert not plugins.pm.has_plugin("typo")


def test_a_taken_name_is_reported_and_not_overridden(fake_distributions: Path) -> None:
    plugins = Plugins.discover(Settings())
    thief = plugins.infos["thief"]
    assert any("'sqlite' is already provided" in e for e in thief.errors)
    assert thief.store_schemes == ["thief"]
    from botbridge.clock import FakeClock
    from botbridge.stores.sqlite import SQLiteStore

    assert isinstance(plugins.stores["sqlite"]("sqlite:///x.db", FakeClock()), SQLiteStore)


def test_allow_list_and_block_list(fake_distributions: Path) -> None:
    allowed = Plugins.discover(Settings(load_plugins="goodbot"))
    assert set(allowed.infos) >= {"goodbot", "memory", "sqlite"}
    assert "broken" not in allowed.infos and "thief" not in allowed.infos
    blocked = Plugins.discover(Settings(block_plugins="goodbot,broken"))
    assert "goodbot" not in blocked.infos and "GOOD_BOT" not in blocked.bot_backends
    assert "thief" in blocked.infos


def test_registration_is_validated() -> None:
    class Nameless(Channel):
        pass

    class BadType(BotBackend):
        type = "lower-case"

    class Fine(Channel):
        name = "fine"

    class Plugin:
        @hookimpl
        def register_channels(self, register):  # type: ignore[no-untyped-def]
            register(Nameless)
            register(object)
            register(Fine)
            register(Fine)

        @hookimpl
        def register_bot_backends(self, register):  # type: ignore[no-untyped-def]
            register(BadType)

    plugins = Plugins()
    plugins.add(Plugin(), "p")
    plugins.collect()
    assert list(plugins.channels) == ["fine"]
    assert plugins.bot_backends == {}
    assert len(plugins.infos["p"].errors) == 4


def test_a_raising_registry_hook_is_contained() -> None:
    class Plugin:
        @hookimpl
        def register_channels(self, register):  # type: ignore[no-untyped-def]
            raise RuntimeError("boom")

    plugins = Plugins()
    plugins.add(Plugin(), "p")
    plugins.collect()
    assert "RuntimeError: boom" in plugins.infos["p"].errors[0]


def test_failing_observers_do_not_propagate() -> None:
    seen = []

    class Bad:
        @hookimpl
        def on_event(self, event, account_id):  # type: ignore[no-untyped-def]
            raise ValueError("observer bug")

    class Good:
        @hookimpl
        def on_event(self, event):  # type: ignore[no-untyped-def]
            seen.append(event)

    plugins = Plugins()
    plugins.add(Bad(), "bad")
    plugins.add(Good(), "good")
    plugins.notify("on_event", event="e1", account_id="a")
    assert seen == ["e1"]


def test_cli_lists_plugins_and_errors(fake_distributions: Path) -> None:
    env = {"PYTHONPATH": str(fake_distributions), "PATH": ""}
    result = subprocess.run(
        [sys.executable, "-m", "botbridge.cli", "plugins"], capture_output=True, text=True, env=env, timeout=60
    )
    assert result.returncode == 1  # there are load errors
    assert "goodbot" in result.stdout and "connector type GOOD_BOT" in result.stdout
    assert "sqlite" in result.stdout and "store sqlite://" in result.stdout
    assert "ERROR: import failed" in result.stdout
    ok = subprocess.run(
        [sys.executable, "-m", "botbridge.cli", "plugins", "--json"],
        capture_output=True,
        text=True,
        env={**env, "BOTBRIDGE_LOAD_PLUGINS": "goodbot"},
        timeout=60,
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    import json

    names = {p["name"] for p in json.loads(ok.stdout)}
    assert "goodbot" in names and "broken" not in names
