"""httpx or httpx2: which library a caller's client or response belongs to.

httpx2 is httpx's maintained fork: the same API under another module name,
with classes of its own, so an ``httpx.Timeout`` or ``httpx.Auth`` means
nothing to an ``httpx2.Client`` and ``except httpx.RequestError`` does not
catch its errors. The clients keep their own bookkeeping in httpx's types
(httpx is askstream's dependency; httpx2 is optional and never imported
here) and convert the few values that cross into the caller's library: URLs
go as strings, headers as pairs, a ``Timeout``, ``USE_CLIENT_DEFAULT`` and
an ``Auth`` as that library's own.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Generator
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeAlias

import httpx

if TYPE_CHECKING:
    import httpx2

    AsyncClientTypes: TypeAlias = httpx.AsyncClient | httpx2.AsyncClient
    ClientTypes: TypeAlias = httpx.Client | httpx2.Client
    ResponseTypes: TypeAlias = httpx.Response | httpx2.Response
else:
    AsyncClientTypes = ClientTypes = ResponseTypes = Any

__all__ = [
    "AsyncClientTypes",
    "ClientTypes",
    "ResponseTypes",
    "as_httpx_url",
    "auth_for_library",
    "library_of",
    "timeout_for_library",
]

_LIBRARIES = ("httpx", "httpx2")


def library_of(obj: object) -> ModuleType:
    """The module (``httpx`` or ``httpx2``) whose class ``obj`` is, or derives from.

    >>> library_of(httpx.Client()).__name__
    'httpx'
    """
    for cls in type(obj).__mro__:
        root = cls.__module__.partition(".")[0]
        if root in _LIBRARIES:
            return sys.modules[root]
    raise TypeError(f"expected an httpx or httpx2 object, not {type(obj).__name__}")


def as_httpx_url(url: object) -> httpx.URL:
    """An httpx2 URL (or any URL) as httpx's, for the session's bookkeeping."""
    return url if isinstance(url, httpx.URL) else httpx.URL(str(url))


def _other_library(lib: ModuleType) -> ModuleType | None:
    return sys.modules.get("httpx2" if lib is httpx else "httpx")


def timeout_for_library(timeout: Any, lib: ModuleType) -> Any:
    """``timeout=`` in ``lib``'s own types: a ``Timeout`` or ``USE_CLIENT_DEFAULT``
    of the other library becomes ``lib``'s; a number, a tuple or ``None`` is left as is."""
    other = _other_library(lib)
    if other is None:
        return timeout
    if timeout is other.USE_CLIENT_DEFAULT:
        return lib.USE_CLIENT_DEFAULT
    if isinstance(timeout, other.Timeout):
        return lib.Timeout(
            connect=timeout.connect, read=timeout.read, write=timeout.write, pool=timeout.pool
        )
    return timeout


def auth_for_library(auth: Any, lib: ModuleType) -> Any:
    """An ``Auth`` of either library as one ``lib`` accepts (its clients check the class).

    A flow only touches the request and the responses it is sent, whose API
    the two libraries share, so the other library's flow runs unchanged.
    """
    if auth is None or isinstance(auth, lib.Auth):
        return auth
    return _adapter(lib.__name__)(auth)


@functools.cache  # one class per library, made on first use
def _adapter(name: str) -> type:
    """A ``lib.Auth`` class that runs another library's auth flow."""
    lib = sys.modules[name]

    class _ForeignAuth(lib.Auth):  # type: ignore[misc,name-defined]  # lib is a module value
        def __init__(self, inner: Any) -> None:
            self._inner = inner
            self.requires_request_body = inner.requires_request_body
            self.requires_response_body = inner.requires_response_body

        def auth_flow(self, request: Any) -> Generator[Any, Any, None]:
            yield from self._inner.auth_flow(request)

        def __repr__(self) -> str:
            return repr(self._inner)

    return _ForeignAuth
