"""What runs outside tests imports no test tool; the pytest plugin imports nothing until used."""

from __future__ import annotations

import subprocess
import sys
import textwrap

BLOCK_TEST_TOOLS = """
import sys

class Blocked:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in ("pytest", "_pytest", "hypothesis"):
            raise ImportError(f"{name} is a test tool")

sys.meta_path.insert(0, Blocked())
"""


def python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_demo_and_every_registered_fake_load_without_test_tools() -> None:
    ran = python(
        BLOCK_TEST_TOOLS
        + textwrap.dedent(
            """
            import botbridge.cli, botbridge.demo
            from botbridge.plugins import Plugins
            from botbridge.settings import Settings

            plugins = Plugins.discover(Settings(store="memory://"))
            errors = [e for info in plugins.infos.values() for e in info.errors]
            assert not errors, errors
            for factory in plugins.fakes.values():
                factory()
            print(sorted(f"{kind}:{name}" for kind, name in plugins.fakes))
            """
        )
    )
    assert ran.returncode == 0, ran.stderr
    # every provider plugin of the repository registers its fake
    for fake in (
        "channel:sinch",
        "channel:bird",
        "channel:scg",
        "bot:AZURE_BOT_DIRECT_LINE",
        "bot:AMAZON_LEX",
        "bot:GOOGLE_DIALOG_FLOW",
    ):
        assert fake in ran.stdout


def test_the_pytest_plugin_imports_no_botbridge_module_until_a_fixture_runs() -> None:
    ran = python(
        "import sys, botbridge_pytest\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('botbridge', 'hypothesis', 'httpx')))"
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == "[]"
