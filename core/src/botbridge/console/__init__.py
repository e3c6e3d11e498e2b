"""The web console (`/console`) and the API reference (`/docs`), served when `BOTBRIDGE_CONSOLE` is on.

Both are static files shipped inside the package (no build step, no CDN):
the pages run in the browser and call the REST API with the API key the
operator signs in with (kept in the tab's sessionStorage, sent only as a
bearer header). Every URL the pages use is relative, so they work under any
mount prefix (ASGI `root_path`). When the setting is off, the routes answer
404 exactly like any unknown path.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}

# The pages load only their own files and talk only to their own host. Media
# of a conversation (images a user sent) may live anywhere, so images may
# come from any http(s) URL; nothing else may. `form-action 'none'`: a form
# can never be submitted by the browser itself (a key never lands in a URL).
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data: https: http:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)
HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cache-control": "no-cache",
}


@cache
def files() -> dict[str, tuple[bytes, str]]:
    """Every shipped file by its URL name: the two pages and the flat `assets/` folder."""
    root = resources.files(__name__)
    found = {}
    for folder, prefix in ((root / "pages", ""), (root / "assets", "assets/")):
        for item in folder.iterdir():
            suffix = "." + item.name.rsplit(".", 1)[-1]
            if item.is_file() and suffix in CONTENT_TYPES:
                found[prefix + item.name] = (item.read_bytes(), CONTENT_TYPES[suffix])
    return found


def _serve(request: Request, name: str) -> Response:
    if not request.app.state.runtime.settings.console:
        raise HTTPException(404)
    found = files().get(name)
    if found is None:
        raise HTTPException(404)
    body, media_type = found
    return Response(body, media_type=media_type, headers=HEADERS)


async def console_page(request: Request) -> Response:
    return _serve(request, "console.html")


async def docs_page(request: Request) -> Response:
    return _serve(request, "docs.html")


async def asset(request: Request) -> Response:
    return _serve(request, "assets/" + request.path_params["name"])


ROUTES = [
    Route("/console", console_page, methods=["GET"]),
    Route("/console/assets/{name:path}", asset, methods=["GET"]),
    Route("/docs", docs_page, methods=["GET"]),
]

__all__ = ["ROUTES", "files"]
