"""Credentials for the clients: ``BearerAuth``, and httpx's ``auth=`` forms made one type."""

from __future__ import annotations

import sys
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any, TypeAlias

import httpx

if TYPE_CHECKING:
    import httpx2

__all__ = ["AuthTypes", "BearerAuth", "build_auth"]

#: What ``auth=`` takes, as in httpx: an ``httpx.Auth`` (or ``httpx2.Auth``), a
#: ``(user, password)`` tuple (Basic) or a function that edits the request.
if TYPE_CHECKING:
    AuthTypes: TypeAlias = (
        httpx.Auth
        | httpx2.Auth
        | tuple[str | bytes, str | bytes]
        | Callable[[httpx.Request], httpx.Request]
    )
else:
    AuthTypes: TypeAlias = (
        httpx.Auth | tuple[str | bytes, str | bytes] | Callable[[httpx.Request], httpx.Request]
    )


class BearerAuth(httpx.Auth):
    """Send ``Authorization: Bearer <token>`` (RFC 6750 §2.1) with every request.

    An ``httpx.Auth``: pass it as ``auth=`` to :func:`aconnect` / :func:`connect`
    (which send it on every request of the stream, resumes included, and never to
    another origin) or to any httpx client. The token never appears in ``repr``.

    Example::

        auth = askstream.BearerAuth(os.environ["ASKSTREAM_TOKEN"])
        async with askstream.aconnect("POST", url, json=body, auth=auth) as source:
            ...
    """

    def __init__(self, token: str) -> None:
        # A header value may not hold CR, LF or other controls (RFC 9110 §5.5), and
        # RFC 6750's b64token is ASCII without spaces (a space would end it early).
        if not token or " " in token or not (token.isascii() and token.isprintable()):
            raise ValueError("a bearer token must be printable ASCII without spaces")
        self._header = f"Bearer {token}"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = self._header
        yield request

    def __repr__(self) -> str:
        return "BearerAuth(token=<hidden>)"


def build_auth(auth: AuthTypes | None) -> Any:
    """``auth=`` as one ``httpx.Auth`` or ``httpx2.Auth`` (``None``: none given), as
    httpx's clients read it; ``_flavor.auth_for_library`` makes it the client's library's."""
    if auth is None or isinstance(auth, httpx.Auth):
        return auth
    fork = sys.modules.get("httpx2")  # an httpx2.Auth means httpx2 is imported already
    if fork is not None and isinstance(auth, fork.Auth):
        return auth
    if isinstance(auth, tuple):
        return httpx.BasicAuth(*auth)
    if callable(auth):
        return httpx.FunctionAuth(auth)
    raise TypeError(f"auth= takes an httpx.Auth, a (user, password) tuple or a function: {auth!r}")
