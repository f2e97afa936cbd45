"""Another site, for the cross-origin tests: a blank page and askstream.js, served
by uvicorn on its own loopback port (so another origin than the service's), as
any site that embeds the browser client would serve them."""

from __future__ import annotations

from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse
from starlette.routing import Route

import askstream

CLIENT = Path(askstream.__file__).parent / "web" / "askstream.js"
PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>another site</title>
<link rel="icon" href="data:,"></head>
<body>another site</body></html>
"""


async def _page(request: Request) -> HTMLResponse:
    return HTMLResponse(PAGE)


async def _client(request: Request) -> FileResponse:
    return FileResponse(CLIENT, media_type="text/javascript")


def create() -> Starlette:
    """The site: ``/`` and ``/askstream.js``."""
    return Starlette(routes=[Route("/", _page), Route("/askstream.js", _client)])
