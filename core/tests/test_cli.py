"""The `botbridge` command: help for everything, versions, one-line setting errors, closed pipes."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import pytest

from botbridge.cli import build_parser


def botbridge(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("BOTBRIDGE_")}
    return subprocess.run(
        [sys.executable, "-m", "botbridge.cli", *args],
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


def commands(parser: argparse.ArgumentParser, prefix: str = "") -> dict[str, argparse.ArgumentParser]:
    """Every (sub)command registered, by its full name."""
    found = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found[f"{prefix}{name}"] = sub
                found.update(commands(sub, f"{prefix}{name} "))
    return found


def test_top_level_help_lists_every_registered_command_with_its_help() -> None:
    parser = build_parser()
    help_text = " ".join(parser.format_help().split())
    top = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert len(top.choices) >= 4
    for choice in top._choices_actions:
        assert choice.help, f"{choice.dest} has no help"
        assert choice.dest in help_text and " ".join(choice.help.split()) in help_text


def test_every_option_says_what_it_does_and_its_default() -> None:
    for name, sub in commands(build_parser()).items():
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
                continue
            assert action.help, f"botbridge {name} {action.dest}: no help"
            if action.option_strings and not action.required:
                assert "default" in action.help, f"botbridge {name} {action.option_strings[0]}: no default in its help"


def test_version_names_core_and_each_plugin() -> None:
    result = botbridge("--version")
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert lines[0].startswith("botbridge 0.")
    assert any(line.startswith("botbridge-lex ") for line in lines)


@pytest.mark.parametrize(
    ("variable", "value", "accepts"),
    [
        ("BOTBRIDGE_WORKERS", "abc", "a whole number >= 1 and <= 256"),
        ("BOTBRIDGE_LOG_LEVEL", "verbose", "one of DEBUG, INFO, WARNING, ERROR, CRITICAL"),
        ("BOTBRIDGE_API_KEYS", "justakey", "account:key pairs"),
        ("BOTBRIDGE_LOG_FORMAT", "xml", "one of text, json"),
        ("BOTBRIDGE_SECRET_KEY", "short-key", "keys of 16+ characters"),
    ],
)
def test_a_bad_setting_is_one_line_naming_it_and_what_it_accepts(variable: str, value: str, accepts: str) -> None:
    result = botbridge("plugins", env={variable: value})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert variable in lines[0] and accepts in lines[0]
    if variable in ("BOTBRIDGE_API_KEYS", "BOTBRIDGE_SECRET_KEY"):
        assert value not in result.stderr  # a secret is never echoed


def test_a_store_scheme_without_its_plugin_names_the_distribution_to_install() -> None:
    result = botbridge(
        "store",
        "migrate",
        env={"BOTBRIDGE_STORE": "redis://:hunter22@127.0.0.1:6379/0", "BOTBRIDGE_BLOCK_PLUGINS": "redis"},
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "pip install botbridge-redis" in lines[0] and "BOTBRIDGE_STORE" in lines[0]
    assert "hunter22" not in result.stderr


def test_a_reader_that_leaves_early_ends_no_traceback() -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("BOTBRIDGE_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "botbridge.cli", "plugins", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=clean,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # gone before the first write: that write fails every time
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 1
    assert "Traceback" not in stderr and "BrokenPipeError" not in stderr, stderr


def test_serve_hands_uvicorn_an_app_whose_startup_objects_the_collector_no_longer_walks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import gc

    import uvicorn

    from botbridge import cli

    seen: dict[str, int] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: seen.update(frozen=gc.get_freeze_count()))
    monkeypatch.setattr(cli.logs, "configure", lambda *args: None)  # the test session's logging stays as it is
    monkeypatch.setenv("BOTBRIDGE_STORE", "memory://")
    monkeypatch.setenv("BOTBRIDGE_API_KEYS", "acct:" + "k" * 32)
    monkeypatch.setenv("BOTBRIDGE_SECRET_KEY", "s" * 32)
    gc.unfreeze()
    try:
        assert cli.main(["serve", "--port", "0"]) == 0
        # the imports, the plugins and the app are in the permanent generation
        assert seen["frozen"] > 10_000
    finally:
        gc.unfreeze()
