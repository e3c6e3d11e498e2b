"""What the bench's processes share: ports, process groups, /proc readings, names of the fake accounts."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
LOOPBACK = "127.0.0.1"

SCG_TOKEN = "scg-test-token-0001"
ESS_SECRET = "bench-ess-delivery-secret-0001"
SCG_FROM = "channel:benchChannel01"
SENDER_ADDRESS = "66000"
SEND_PATH = "/scg-external-api/api/v1/messaging/message_requests"
DL_API = "/v3/directline"

# Every MO's text carries its sequence number between hashes; the echo bot
# answers "echo: <text>", so the MT at the SCG fake carries it too.
SEQ = re.compile(rb"#(\d+)#")


def text_for(seq: int) -> str:
    return f"bench #{seq}#"


def contact_for(index: int, pool: str) -> str:
    # E.164 numbers the SCG fake accepts as recipients; `pool` keeps systems apart.
    return f"+1{pool}{index:07d}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


# --- processes --------------------------------------------------------------


class Proc:
    """A child in its own process group, stopped (group and all) by `stop`."""

    def __init__(self, name: str, argv: Sequence[str], env: dict[str, str] | None = None, log: Path | None = None):
        self.name = name
        self.log = log
        out = open(log, "ab") if log else subprocess.DEVNULL
        self._out = out
        self.popen = subprocess.Popen(
            list(argv),
            env={**os.environ, **(env or {})},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, grace: float = 5.0) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(timeout=5)
        # anything the child left in its group
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        if self._out is not subprocess.DEVNULL:
            self._out.close()

    def tail(self, lines: int = 20) -> str:
        if not self.log or not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


@contextlib.contextmanager
def processes() -> Iterator[list[Proc]]:
    started: list[Proc] = []
    try:
        yield started
    finally:
        for proc in reversed(started):
            proc.stop()


def python(*args: str) -> list[str]:
    return [sys.executable, *args]


def wait_for(url: str, proc: Proc | None = None, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and not proc.alive():
            raise RuntimeError(f"{proc.name} exited early:\n{proc.tail()}")
        try:
            if httpx.get(url, timeout=1.0).status_code < 500:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer in {timeout:.0f}s")


# --- /proc ------------------------------------------------------------------

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its reaped children, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is the state (field 3): utime is field 14, stime 15, cutime 16, cstime 17
    return sum(int(v) for v in fields[11:15]) / CLOCK_TICKS


def peak_rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0
