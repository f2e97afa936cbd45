"""The headers every event stream carries."""

from __future__ import annotations

import pytest

from askstream import EventStreamResponse
from askstream.http._headers import stream_headers


def test_a_stream_has_the_headers_proxies_need() -> None:
    response = EventStreamResponse([])
    assert dict(response.headers) == {
        "content-type": "text/event-stream; charset=utf-8",
        "cache-control": "no-cache, no-transform",
        "x-accel-buffering": "no",
    }


def test_extra_headers_are_added_and_may_replace_a_default() -> None:
    headers = stream_headers({"X-Request-Id": "7", "Cache-Control": "no-store"})
    assert headers == {
        "cache-control": "no-store",
        "x-accel-buffering": "no",
        "x-request-id": "7",
    }


@pytest.mark.parametrize(
    "name",
    [
        "Connection",
        "Keep-Alive",
        "Proxy-Connection",
        "Transfer-Encoding",
        "Upgrade",
        "TE",
        "Content-Length",
        "Content-Type",
    ],
)
def test_hop_by_hop_and_framing_headers_are_refused(name: str) -> None:
    # HTTP/2 forbids connection-specific fields (RFC 9113 §8.2.2).
    with pytest.raises(ValueError, match="must not set"):
        EventStreamResponse([], headers={name: "x"})


def test_no_response_header_is_hop_by_hop() -> None:
    names = {name for name, _ in EventStreamResponse([], headers={"X-A": "1"}).raw_headers}
    assert not names & {b"connection", b"keep-alive", b"transfer-encoding", b"upgrade"}
