"""The lean upstream client (``service/_upstream.py``) on its own: HTTP/1.1 framings
cut at every byte, kept-alive connections, TLS, and when httpx takes over."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from pathlib import Path

import pytest

from askstream.service import OpenAIBackend, UpstreamError
from askstream.service._upstream import lean_ok
from askstream.testing import ServerProcess, require

pytestmark = pytest.mark.anyio

HI = [{"role": "user", "content": "Hi"}]
EVENTS = (
    b'data: {"choices":[{"delta":{"content":"Hel"}}]}\n\n'
    b'data: {"choices":[{"delta":{"content":"lo \\u4f60"}}]}\r\n\r\n'
    b'data: {"choices":[{"delta":{},"finish_reason":"stop"}]}\n\n'
    b"data: [DONE]\n\n"
)
HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"


def chunked(body: bytes) -> bytes:
    return b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)


# Each answer as the bytes on the wire: every way HTTP/1.1 frames a body.
FRAMINGS = {
    "chunked": HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + chunked(EVENTS),
    "content-length": HEAD + b"Content-Length: %d\r\n\r\n" % len(EVENTS) + EVENTS,
    "until-close": HEAD + b"Connection: close\r\n\r\n" + EVENTS,
}


Server = Callable[[bytes, int], "asyncio.Future[str]"]


@pytest.fixture
async def raw_server() -> AsyncIterator[tuple[list[bytes], Callable[[bytes, int], None], str]]:
    """A loopback server that answers each request with the given bytes, ``step``
    bytes per write (1: byte by byte), then closes; it records the requests."""
    requests: list[bytes] = []
    script: dict[str, object] = {"answer": b"", "step": 1}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        requests.append(head + await reader.readexactly(length))
        answer, step = script["answer"], script["step"]
        assert isinstance(answer, bytes)
        assert isinstance(step, int)
        # The client may leave once it has [DONE], before the last bytes.
        with contextlib.suppress(ConnectionError):
            for start in range(0, len(answer), step):
                writer.write(answer[start : start + step])
                await writer.drain()
                await asyncio.sleep(0)
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]

    def answer(data: bytes, step: int) -> None:
        script["answer"], script["step"] = data, step

    async with server:
        yield requests, answer, f"http://127.0.0.1:{port}/v1"


async def collect(backend: OpenAIBackend) -> str:
    async with aclosing(backend.stream(HI)) as chunks:  # type: ignore[arg-type]
        return "".join([chunk.delta async for chunk in chunks])


@pytest.mark.parametrize("framing", list(FRAMINGS))
@pytest.mark.parametrize("step", [1, 7, 100_000], ids=["byte-by-byte", "7-bytes", "whole"])
async def test_every_framing_cut_anywhere_gives_the_same_answer(
    raw_server: tuple[list[bytes], Callable[[bytes, int], None], str], framing: str, step: int
) -> None:
    requests, answer, url = raw_server
    answer(FRAMINGS[framing], step)
    backend = OpenAIBackend(url, "m", api_key="sk-1")
    try:
        assert await collect(backend) == "Hello 你"
    finally:
        await backend.aclose()
    head, _, body = requests[0].partition(b"\r\n\r\n")
    assert head.startswith(b"POST /v1/chat/completions HTTP/1.1\r\n")
    assert b"\r\nAuthorization: Bearer sk-1" in head
    assert b'"stream": true' in body


async def test_an_answer_cut_short_is_an_upstream_error(
    raw_server: tuple[list[bytes], Callable[[bytes, int], None], str],
) -> None:
    _, answer, url = raw_server
    whole = FRAMINGS["content-length"]
    answer(whole[: len(whole) - 40], 5)  # the server closes 40 bytes early
    backend = OpenAIBackend(url, "m")
    try:
        with pytest.raises(UpstreamError, match="stream broke"):
            await collect(backend)
    finally:
        await backend.aclose()


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 2\r\n\r\nhi",
         "did not stream: expected Content-Type text/event-stream, got 'text/html'"),
        (b"HTTP/1.1 429 Too Many\r\nContent-Length: 35\r\n\r\n"
         b'{"error": {"message": "slow down"}}', "answered HTTP 429: slow down"),
        (b"HTTP/1.1 204 No Content\r\n\r\n", "ended the answer without finishing"),
        (b"NOT HTTP AT ALL\r\n\r\n", "stream broke"),
    ],
    ids=["not-a-stream", "error-status", "no-content", "garbage"],
)  # fmt: skip
async def test_answers_that_are_not_streams_are_upstream_errors(
    raw_server: tuple[list[bytes], Callable[[bytes, int], None], str], answer: bytes, message: str
) -> None:
    _, set_answer, url = raw_server
    set_answer(answer, 3)
    backend = OpenAIBackend(url, "m")
    try:
        with pytest.raises(UpstreamError, match=message):
            await collect(backend)
    finally:
        await backend.aclose()


async def test_a_kept_alive_connection_serves_the_next_ask(upstream: ServerProcess) -> None:
    backend = OpenAIBackend(upstream.url + "/v1", "fake")
    assert backend._upstream is not None
    try:
        assert await collect(backend) == "Echo: Hi"
        (idle,) = backend._upstream._idle.values()
        first = idle[0]
        assert await collect(backend) == "Echo: Hi"
        assert list(idle) == [first]  # used again, and back in the pool
    finally:
        await backend.aclose()
    assert first.lost


@pytest.mark.parametrize(
    ("url", "proxies", "lean"),
    [
        ("http://127.0.0.1:8000/v1", {}, True),
        ("https://api.openai.com/v1", {}, True),
        ("https://api.openai.com/v1", {"HTTPS_PROXY": "http://proxy:3128"}, False),
        ("http://h/v1", {"HTTPS_PROXY": "http://proxy:3128"}, True),
        ("http://h/v1", {"ALL_PROXY": "http://proxy:3128"}, False),
        ("http://h/v1", {"HTTP_PROXY": "http://proxy:3128", "NO_PROXY": "h"}, True),
        ("http://user:pw@h/v1", {}, False),
        ("http://bücher.example/v1", {}, False),
    ],
    ids=["http", "https", "https-proxy", "other-proxy", "all-proxy", "no-proxy",
         "credentials", "idn"],
)  # fmt: skip
def test_httpx_reads_what_the_lean_client_cannot(
    monkeypatch: pytest.MonkeyPatch, url: str, proxies: dict[str, str], lean: bool
) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    for name, value in proxies.items():
        monkeypatch.setenv(name, value)
    assert lean_ok(url) is lean


def test_a_header_that_would_split_the_request_is_refused() -> None:
    from urllib.parse import urlsplit

    from askstream.service._upstream import _request

    with pytest.raises(ValueError, match="not a valid HTTP header"):
        _request(urlsplit("http://h/v1"), b"{}", {"Authorization": "Bearer x\r\nX-Evil: 1"})


# -- TLS ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for localhost and 127.0.0.1 (made with openssl)."""
    require(shutil.which("openssl") is not None, "the openssl command")
    where = tmp_path_factory.mktemp("tls")
    cert, key = where / "cert.pem", where / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.fixture(scope="module")
def tls_upstream(certificate: tuple[Path, Path]) -> AsyncIterator[str]:
    cert, key = certificate
    with ServerProcess(
        "askstream.testing:FakeUpstream.from_env",
        factory=True,
        args=["--ssl-certfile", str(cert), "--ssl-keyfile", str(key)],
    ) as server:
        yield f"https://localhost:{server.port}/v1"


async def test_https_is_read_with_the_default_tls_context(
    tls_upstream: str, certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    # ssl.create_default_context() trusts SSL_CERT_FILE (OpenSSL's default paths).
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))
    backend = OpenAIBackend(tls_upstream, "fake")
    assert backend._upstream is not None
    try:
        assert await collect(backend) == "Echo: Hi"
    finally:
        await backend.aclose()


async def test_an_untrusted_certificate_is_refused(tls_upstream: str) -> None:
    assert ssl.get_default_verify_paths()  # the system's store, which lacks our certificate
    backend = OpenAIBackend(tls_upstream, "fake")
    try:
        with pytest.raises(UpstreamError, match=r"cannot reach the LLM back end.*CERTIFICATE"):
            await collect(backend)
    finally:
        await backend.aclose()
