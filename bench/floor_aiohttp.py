"""The aiohttp floor: the minimal relay over one `aiohttp.ClientSession`, no httpx in between.

python bench/floor_aiohttp.py --port 8202 --scg-url http://127.0.0.1:8101 --dl-url http://127.0.0.1:8102
"""

from __future__ import annotations

from typing import Any

import aiohttp
from floor_base import Relay, app, arguments, run


def main() -> None:
    args = arguments(__doc__.split("\n", 1)[0])
    session: aiohttp.ClientSession | None = None

    async def call(method: str, url: str, bearer: str, body: Any, params: dict[str, str] | None) -> tuple[int, Any]:
        assert session is not None
        async with session.request(
            method, url, headers={"authorization": f"Bearer {bearer}"}, json=body, params=params
        ) as response:
            return response.status, await response.json(content_type=None)

    async def startup() -> None:
        nonlocal session
        connector = aiohttp.TCPConnector(limit=200, keepalive_timeout=30.0)
        session = aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=20.0))

    async def shutdown() -> None:
        if session is not None:
            await session.close()

    run(app(Relay(call, args.scg_url, args.dl_url), startup, shutdown), args.port)


if __name__ == "__main__":
    main()
