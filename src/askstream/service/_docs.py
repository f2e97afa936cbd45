"""The API's reference page, ``GET /docs``: Swagger UI served from the package.

FastAPI's own ``/docs`` loads Swagger UI from a CDN onto the API's origin, with
an inline script. This one serves ``web/docs.html``, which loads the vendored,
pinned bundle (``web/vendor/swagger-ui/``, see its README.txt) and ``web/docs.js``
from ``/static``, so the page's Content-Security-Policy (``script-src 'self'``)
holds on it too and no third-party script ever runs on our origin.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse

__all__ = ["install_docs"]

_WEB = Path(__file__).resolve().parent.parent / "web"


async def _docs(request: Request) -> FileResponse:
    return FileResponse(_WEB / "docs.html")


def install_docs(app: FastAPI) -> None:
    """Serve Swagger UI over ``/openapi.json`` at ``GET /docs``.

    Create the app with ``docs_url=None`` (FastAPI's own page would answer first)
    and mount ``/static`` on the web folder, as ``create_app`` does::

        app = FastAPI(docs_url=None, redoc_url=None)
        app.mount("/static", StaticFiles(directory=web), name="static")
        install_docs(app)
    """
    app.add_api_route("/docs", _docs, methods=["GET"], include_in_schema=False)
