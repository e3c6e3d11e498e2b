"""The httpx floor: the minimal relay over an `httpx.AsyncClient`.

`--transport aiohttp` (default) builds the client exactly as botbridge does
(`botbridge.http.create_http_client`, httpx over the httpx-aiohttp
transport); `--transport httpx` uses httpx's own transport, for reference.

    python bench/floor_httpx.py --port 8201 --scg-url http://127.0.0.1:8101 --dl-url http://127.0.0.1:8102
"""

from __future__ import annotations

from typing import Any

from floor_base import Relay, app, arguments, run

from botbridge.http import create_http_client
from botbridge.settings import Settings


def main() -> None:
    args = arguments(__doc__.split("\n", 1)[0])
    client = create_http_client(Settings(http_transport=args.transport, allow_private_urls=True))  # fakes on loopback

    async def call(method: str, url: str, bearer: str, body: Any, params: dict[str, str] | None) -> tuple[int, Any]:
        response = await client.request(
            method, url, headers={"authorization": f"Bearer {bearer}"}, json=body, params=params
        )
        return response.status_code, response.json()

    relay = Relay(call, args.scg_url, args.dl_url)

    async def startup() -> None:
        pass

    run(app(relay, startup, client.aclose), args.port)


if __name__ == "__main__":
    main()
