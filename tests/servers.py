"""The host as its own process for end-to-end tests (fakes run in threads: botbridge.loopback)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx

from botbridge.loopback import free_port, serve_app


def wait_for(url: str, timeout: float = 20.0, process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=1.0).status_code < 500:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer")


class Stamped:
    """ASGI middleware that notes when each request reached the app it wraps."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.stamps: list[tuple[float, str]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.stamps.append((time.monotonic(), scope["path"]))
        await self.app(scope, receive, send)

    def busiest_second(self, path_suffix: str) -> int:
        """The most requests to paths ending so that fell in any one second."""
        times = sorted(t for t, path in self.stamps if path.endswith(path_suffix))
        return max((sum(1 for s in times if t <= s < t + 1) for t in times), default=0)


async def eventually(condition: Callable[[], bool], what: str, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await anyio.sleep(0.02)


# Spins until its deadline, then exits: a burner that outlives its test is impossible.
BURN = "import sys, time\nend = time.monotonic() + float(sys.argv[1])\nwhile time.monotonic() < end:\n    pass\n"


@contextmanager
def cpu_burner(seconds: float, processes: int | None = None) -> Iterator[None]:
    """Keep every core busy for at most `seconds` (a busy machine, as CI often is)."""
    burners = [
        subprocess.Popen([sys.executable, "-c", BURN, str(seconds)]) for _ in range(processes or os.cpu_count() or 2)
    ]
    try:
        yield
    finally:
        for burner in burners:
            burner.kill()
            burner.wait(timeout=10)


class HostProcess:
    """`botbridge serve` in its own process, as an operator runs it."""

    def __init__(self, env: dict[str, str], workdir: Path, port: int | None = None) -> None:
        self.given_port = port is not None
        self.env_given = env
        self.workdir = workdir
        self.process: subprocess.Popen[bytes] | None = None
        self._listen_on(port or free_port())

    def _listen_on(self, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "BOTBRIDGE_PUBLIC_URL": self.url, **self.env_given}
        self.log = self.workdir / f"host-{self.port}.log"

    def start(self) -> HostProcess:
        for attempt in range(3):
            with open(self.log, "ab") as log:
                self.process = subprocess.Popen(
                    [sys.executable, "-m", "botbridge.cli", "serve", "--port", str(self.port)],
                    env=self.env,
                    cwd=self.workdir,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            try:
                wait_for(self.url + "/healthz", process=self.process)
                return self
            except RuntimeError:
                # A port free when chosen may be taken by another process before
                # the host binds it (the host is a process of its own: it cannot be
                # handed a bound socket): choose another, unless the test chose it.
                if self.given_port or attempt == 2 or "address already in use" not in self.output():
                    raise
                self._listen_on(free_port())
        raise AssertionError("unreachable")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


__all__ = ["HostProcess", "Stamped", "cpu_burner", "eventually", "free_port", "serve_app", "wait_for"]
