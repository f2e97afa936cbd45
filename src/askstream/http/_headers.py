"""The response headers of an event stream."""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["stream_headers"]

# Connection-specific fields: HTTP/2 and HTTP/3 forbid them (RFC 9113 §8.2.2,
# RFC 9114 §4.2) and the HTTP/1.1 server frames the stream itself. Content-Type
# and Content-Length are the response's own business.
_FORBIDDEN = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "upgrade",
        "te",
        "content-length",
        "content-type",
    }
)

_DEFAULTS = {
    # no-transform: proxies and CDNs must not compress or rewrite the stream.
    "cache-control": "no-cache, no-transform",
    # nginx buffers proxied responses unless told not to.
    "x-accel-buffering": "no",
}


def stream_headers(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The default headers of a stream, with the caller's extras (names lower-cased).

    An extra header may replace a default (``Cache-Control``) but not name a
    hop-by-hop field, ``Content-Type`` or ``Content-Length``: ``ValueError``.

    >>> stream_headers({"X-Request-Id": "7"})["x-request-id"]
    '7'
    """
    headers = dict(_DEFAULTS)
    for name, value in (extra or {}).items():
        key = name.lower()
        if key in _FORBIDDEN:
            raise ValueError(f"an event stream must not set the {name!r} header")
        headers[key] = value
    return headers
