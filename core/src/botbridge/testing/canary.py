"""A loopback server that counts connections: proof that the host did not call somewhere."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any


class Canary:
    """A loopback TCP server that counts every connection made to it.

    It answers any request with `200 {}` so a caller that does get through
    sees success; the count, not the answer, is what a test asserts on.
    `async with Canary() as canary:` listens on 127.0.0.1 and, where the
    machine has it, on [::1], on one port.
    """

    def __init__(self) -> None:
        self.hits = 0
        self.port = 0
        self._servers: list[Any] = []

    async def __aenter__(self) -> Canary:
        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.hits += 1
            with contextlib.suppress(Exception):
                await asyncio.wait_for(reader.read(65536), 1.0)
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}")
                await writer.drain()
            writer.close()

        first = await asyncio.start_server(answer, "127.0.0.1", 0)
        self.port = first.sockets[0].getsockname()[1]
        self._servers.append(first)
        with contextlib.suppress(OSError):
            self._servers.append(await asyncio.start_server(answer, "::1", self.port))
        return self

    async def __aexit__(self, *exc: object) -> None:
        for server in self._servers:
            server.close()
            await server.wait_closed()

    @property
    def has_ipv6(self) -> bool:
        return len(self._servers) > 1
