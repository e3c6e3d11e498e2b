"""The channel and bot fakes in one process: SCG on one port, Direct Line on another.

Both are the plugins' strict fakes, answering immediately (the echo bot has
no delay rules). A thin ASGI layer in front of them

- notes how long the Direct Line fake spent on each turn's requests (the
  POST carries the MO's sequence number; a GET is the turn of the last POST
  on its conversation), so that the load generator can subtract the fakes'
  own time from the latency;
- stamps every MT the SCG fake receives with its arrival time
  (`time.monotonic()`, one clock for every process of the machine) and
  streams `seq arrival fake_seconds` lines to whoever holds
  `GET /bench/stream` on the SCG port;
- counts the GETs of activities (a turn's own read or the late-reply
  poller's), reported by `GET /bench/status`;
- `POST /bench/reset` drops what the fakes recorded (not their conversations).

    python bench/fakes.py --scg-port 8101 --dl-port 8102
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import uvicorn
from common import DL_API, LOOPBACK, SCG_TOKEN, SEND_PATH, SEQ

from botbridge_azure_directline.testing import FakeDirectLine
from botbridge_scg.testing import FakeScg

ACTIVITIES = "/activities"


async def _body(receive: Any) -> tuple[bytes, Any]:
    """Read the whole request body; return it and a `receive` that replays it."""
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    body = b"".join(chunks)
    sent = False

    async def replay() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return body, replay


class Recorder:
    def __init__(self) -> None:
        self.fake_time: dict[int, float] = {}  # seq -> seconds the Direct Line fake spent on its turn
        self.turn_of: dict[str, int] = {}  # conversation id -> seq of its last posted activity
        self.queue: asyncio.Queue[bytes] | None = None
        self.arrived = 0
        self.activity_gets = 0

    def reset(self) -> None:
        self.fake_time.clear()
        self.arrived = 0


class DirectLineTimer:
    def __init__(self, app: Any, recorder: Recorder) -> None:
        self.app = app
        self.rec = recorder

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.monotonic()
        path: str = scope["path"]
        seq: int | None = None
        if path.endswith(ACTIVITIES):
            cid = path[len(DL_API) + len("/conversations/") : -len(ACTIVITIES)]
            if scope["method"] == "POST":
                body, receive = await _body(receive)
                found = SEQ.search(body)
                if found:
                    seq = int(found.group(1))
                    self.rec.turn_of[cid] = seq
            else:
                seq = self.rec.turn_of.get(cid)
                self.rec.activity_gets += 1
        await self.app(scope, receive, send)
        if seq is not None:
            self.rec.fake_time[seq] = self.rec.fake_time.get(seq, 0.0) + time.monotonic() - started


class ScgStamp:
    def __init__(self, app: Any, fake: FakeScg, dl: FakeDirectLine, recorder: Recorder) -> None:
        self.app = app
        self.fake = fake
        self.dl = dl
        self.rec = recorder

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        arrived = time.monotonic()
        path: str = scope["path"]
        if path.startswith("/bench/"):
            return await self._control(path, scope, receive, send)
        if path == SEND_PATH and scope["method"] == "POST":
            body, receive = await _body(receive)
            found = SEQ.search(body)
            if found:
                seq = int(found.group(1))
                self.rec.arrived += 1
                fake_seconds = self.rec.fake_time.pop(seq, 0.0)
                if self.rec.queue is not None:
                    self.rec.queue.put_nowait(f"{seq} {arrived:.6f} {fake_seconds:.6f}\n".encode())
        await self.app(scope, receive, send)

    async def _control(self, path: str, scope: Any, receive: Any, send: Any) -> None:
        if path == "/bench/stream":
            return await self._stream(receive, send)
        if path == "/bench/reset":
            self.rec.reset()
            self.fake.sent.clear()
            self.fake.messages.clear()
            self.fake.message_requests.clear()
            self.fake.requests_seen.clear()
            self.dl.requests.clear()
            body = b"reset"
        else:
            body = (
                f"arrived {self.rec.arrived} conversations {len(self.dl.conversations)}"
                f" activity_gets {self.rec.activity_gets}"
            ).encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": body})

    async def _stream(self, receive: Any, send: Any) -> None:
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        self.rec.queue = queue
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"ready\n", "more_body": True})

        async def disconnected() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        watcher = asyncio.ensure_future(disconnected())
        try:
            while not watcher.done():
                getter = asyncio.ensure_future(queue.get())
                done, _ = await asyncio.wait({getter, watcher}, return_when=asyncio.FIRST_COMPLETED)
                if getter not in done:
                    getter.cancel()
                    break
                lines = [getter.result()]
                while not queue.empty():
                    lines.append(queue.get_nowait())
                await send({"type": "http.response.body", "body": b"".join(lines), "more_body": True})
        except OSError:
            pass
        finally:
            watcher.cancel()
            if self.rec.queue is queue:
                self.rec.queue = None


def build(scg_port: int, dl_port: int) -> tuple[Any, Any]:
    recorder = Recorder()
    scg = FakeScg(tokens={SCG_TOKEN})
    dl = FakeDirectLine(base_url=f"http://{LOOPBACK}:{dl_port}")
    dl.rules = []  # the echo bot only: no keyword rules, no delays
    return ScgStamp(scg.app, scg, dl, recorder), DirectLineTimer(dl.app, recorder)


async def serve(scg_port: int, dl_port: int) -> None:
    scg_app, dl_app = build(scg_port, dl_port)
    servers = [
        uvicorn.Server(
            uvicorn.Config(
                app,
                host=LOOPBACK,
                port=port,
                loop="none",
                http="httptools",
                log_level="warning",
                access_log=False,
                lifespan="off",
                backlog=4096,
            )
        )
        for app, port in ((scg_app, scg_port), (dl_app, dl_port))
    ]
    await asyncio.gather(*(server.serve() for server in servers))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--scg-port", type=int, required=True)
    parser.add_argument("--dl-port", type=int, required=True)
    args = parser.parse_args()
    import uvloop

    uvloop.run(serve(args.scg_port, args.dl_port))


if __name__ == "__main__":
    main()
