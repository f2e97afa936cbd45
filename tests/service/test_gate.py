"""The front gate (docs/security.md): who may ask, which ``Host`` we serve, which
pages may write, and the page's own defences. Over real sockets."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from askstream.cli import exposure_refusal
from askstream.service import Settings
from askstream.sse import Decoder
from askstream.testing import ServerProcess

from .conftest import StartService, _module_service
from .test_errors import assert_error

pytestmark = pytest.mark.anyio

ALICE = "alice-token-0123456789abcdef"
TOKENS = {"ASKSTREAM_TOKENS": f"alice:{ALICE}"}
EVIL = "http://evil.example"


@pytest.fixture(scope="module")
def gated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The service on its defaults (anonymous sessions), with one CORS origin allowed."""
    yield from _module_service(tmp_path_factory, ASKSTREAM_CORS_ORIGINS="http://app.example:3000")


# -- Host ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "host", ["evil.example", "evil.example:8000", "127.0.0.1.evil.example", "localhost.:80x"]
)
async def test_a_host_we_do_not_serve_is_400(
    gated: ServerProcess, client: httpx.AsyncClient, host: str
) -> None:
    response = await client.get(gated.url + "/api/chats", headers={"Host": host})
    assert_error(response, 400, "ASKSTREAM_ALLOWED_HOSTS")


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "LOCALHOST:1234", "[::1]:8000"])
async def test_loopback_names_are_served(
    gated: ServerProcess, client: httpx.AsyncClient, host: str
) -> None:
    response = await client.get(gated.url + "/api/health", headers={"Host": host})
    assert response.status_code == 200


async def test_allowed_hosts_replace_the_loopback_names(
    start_service: StartService, client: httpx.AsyncClient
) -> None:
    service = start_service(ASKSTREAM_ALLOWED_HOSTS="chat.example,.corp.example")
    for host, status in [
        ("chat.example", 200),
        ("a.b.corp.example:443", 200),
        ("corp.example", 200),
        ("127.0.0.1", 400),
        ("evilcorp.example", 400),
    ]:
        response = await client.get(service.url + "/api/health", headers={"Host": host})
        assert response.status_code == status, host


# -- cross-site writes -------------------------------------------------------------


async def test_the_founding_guides_own_request_from_our_origin_is_served(
    gated: ServerProcess, client: httpx.AsyncClient
) -> None:
    # What its front end sends: JSON with Content-Type text/event-stream, from the page's origin.
    headers = {
        "Content-Type": "text/event-stream",
        "Origin": gated.url,
        "Sec-Fetch-Site": "same-origin",
    }
    body = '{"chatId": null, "question": "Hello?"}'
    async with client.stream("POST", gated.url + "/api/ask", content=body, headers=headers) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        decoder = Decoder()
        events = [e async for chunk in r.aiter_bytes() for e in decoder.feed(chunk)]
    assert events[-1].event == "done"


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": EVIL},
        {"Origin": "null"},
        {"Origin": "http://127.0.0.1:1"},  # same site, another port: another origin
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
        {"Origin": EVIL, "Sec-Fetch-Site": "cross-site", "Content-Type": "text/plain"},
    ],
    ids=["evil", "null", "other-port", "cross-site", "same-site", "no-cors-simple"],
)
@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/api/ask"), ("POST", "/api/streams/x/cancel"), ("DELETE", "/api/chats/x")],
)
async def test_a_write_another_site_made_is_403(
    gated: ServerProcess,
    client: httpx.AsyncClient,
    headers: dict[str, str],
    method: str,
    path: str,
) -> None:
    body = '{"chatId": null, "question": "forged"}' if path == "/api/ask" else None
    response = await client.request(method, gated.url + path, content=body, headers=headers)
    assert_error(response, 403, "ASKSTREAM_CORS_ORIGINS")


async def test_a_forged_ask_leaves_nothing(gated: ServerProcess) -> None:
    # The victim's own browser session, and a page elsewhere posting with it.
    async with httpx.AsyncClient() as victim:
        await victim.get(gated.url + "/")
        forged = await victim.post(
            gated.url + "/api/ask",
            content='{"question": "forged"}',
            headers={"Origin": EVIL, "Content-Type": "text/plain"},
        )
        assert forged.status_code == 403
        assert (await victim.get(gated.url + "/api/chats")).json()["chats"] == []


# -- CORS ---------------------------------------------------------------------


async def test_an_allowed_origin_gets_its_preflight_and_reads_the_answer(
    gated: ServerProcess, client: httpx.AsyncClient
) -> None:
    origin = "http://app.example:3000"
    preflight = await client.options(
        gated.url + "/api/ask",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type, last-event-id",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == origin
    assert preflight.headers["access-control-allow-credentials"] == "true"
    allowed = preflight.headers["access-control-allow-headers"].lower()
    for header in ("authorization", "content-type", "last-event-id"):
        assert header in allowed
    async with client.stream(
        "POST", gated.url + "/api/ask", json={"question": "hi"}, headers={"Origin": origin}
    ) as response:
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == origin
        assert "content-location" in response.headers["access-control-expose-headers"].lower()


async def test_another_origins_preflight_is_403_json(
    gated: ServerProcess, client: httpx.AsyncClient
) -> None:
    response = await client.options(
        gated.url + "/api/ask",
        headers={"Origin": EVIL, "Access-Control-Request-Method": "POST"},
    )
    assert_error(response, 403)
    assert "access-control-allow-origin" not in response.headers


async def test_no_cors_headers_for_an_origin_not_allowed(
    gated: ServerProcess, client: httpx.AsyncClient
) -> None:
    response = await client.get(gated.url + "/api/chats", headers={"Origin": EVIL})
    assert "access-control-allow-origin" not in response.headers


# -- the page's defences -----------------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/static/app.js", "/static/style.css", "/api/chats"])
async def test_every_answer_carries_the_pages_defences(
    gated: ServerProcess, client: httpx.AsyncClient, path: str
) -> None:
    response = await client.get(gated.url + path)
    assert response.status_code == 200
    csp = response.headers["content-security-policy"]
    for rule in ("default-src 'self'", "script-src 'self'", "frame-ancestors 'none'"):
        assert rule in csp
    assert "unsafe-inline" not in csp
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "same-origin"
    assert response.headers["x-frame-options"] == "DENY"


async def test_the_api_page_is_off_by_default_and_the_schema_is_not(
    gated: ServerProcess, client: httpx.AsyncClient
) -> None:
    assert_error(await client.get(gated.url + "/docs"), 404)
    assert_error(await client.get(gated.url + "/redoc"), 404)
    assert (await client.get(gated.url + "/openapi.json")).status_code == 200


# -- anonymous sessions ---------------------------------------------------------------


def session_cookie(response: httpx.Response) -> str:
    cookie = response.headers["set-cookie"]
    name_value, *attributes = (part.strip() for part in cookie.split(";"))
    assert name_value.startswith("askstream_session=")
    assert {"HttpOnly", "SameSite=Lax", "Path=/"} <= set(attributes), attributes
    assert "Secure" not in attributes  # plain http on loopback
    return name_value.split("=", 1)[1]


async def test_a_browser_session_is_signed_and_survives_a_restart(
    start_service: StartService, tmp_path: Path
) -> None:
    data = tmp_path / "kept"
    service = start_service(data)
    async with httpx.AsyncClient() as browser:
        value = session_cookie(await browser.get(service.url + "/"))
        answer = await browser.post(service.url + "/api/ask", json={"question": "remember me"})
        assert answer.status_code == 200
        assert "set-cookie" not in answer.headers  # the session is known: nothing new
    assert (data / "secret_key").stat().st_mode & 0o077 == 0
    service.stop()
    again = start_service(data)
    async with httpx.AsyncClient(cookies={"askstream_session": value}) as browser:
        chats = (await browser.get(again.url + "/api/chats")).json()["chats"]
        assert [chat["title"] for chat in chats] == ["remember me"]
    # A cookie with its signature altered names nobody: a new session instead.
    forged = value[:-2] + ("AA" if not value.endswith("AA") else "BB")
    async with httpx.AsyncClient(cookies={"askstream_session": forged}) as browser:
        response = await browser.get(again.url + "/api/chats")
        assert response.json()["chats"] == []
        assert session_cookie(response) != value


# -- tokens ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def token_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tokens_file = tmp_path_factory.mktemp("tokens") / "tokens"
    tokens_file.write_text("# who, token\nbob   bob-token-from-the-file-0123\n")
    yield from _module_service(tmp_path_factory, ASKSTREAM_TOKENS_FILE=str(tokens_file), **TOKENS)


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong-token-0123456789", "Basic YWxpY2U6eA==", "Bearer", f"bearer  {ALICE}x"],
    ids=["none", "wrong", "basic", "empty", "near-miss"],
)
@pytest.mark.parametrize(("method", "path"), [("GET", "/api/chats"), ("POST", "/api/ask")])
async def test_with_tokens_an_api_call_without_a_valid_one_is_401(
    token_service: ServerProcess,
    client: httpx.AsyncClient,
    authorization: str | None,
    method: str,
    path: str,
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    response = await client.request(
        method, token_service.url + path, json={"question": "hi"}, headers=headers
    )
    assert_error(response, 401)
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert "set-cookie" not in response.headers  # no anonymous sessions with tokens


@pytest.mark.parametrize("token", [ALICE, "bob-token-from-the-file-0123"])
async def test_a_token_from_the_variable_or_the_file_lets_its_user_in(
    token_service: ServerProcess, client: httpx.AsyncClient, token: str
) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    response = await client.get(token_service.url + "/api/chats", headers=headers)
    assert response.status_code == 200


@pytest.mark.parametrize("path", ["/", "/static/app.js", "/api/health"])
async def test_with_tokens_the_page_and_the_probe_need_none(
    token_service: ServerProcess, client: httpx.AsyncClient, path: str
) -> None:
    assert (await client.get(token_service.url + path)).status_code == 200


# -- refusing an unsafe bind ---------------------------------------------------------


def settings(**values: object) -> Settings:
    return Settings(demo_delay=0.0, data_dir=Path("/nonexistent"), **values)  # type: ignore[arg-type]


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.2"])
def test_serving_loopback_needs_no_tokens(host: str) -> None:
    assert exposure_refusal(settings(host=host)) is None


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10", "example.com"])
def test_serving_a_public_address_without_tokens_is_refused(host: str) -> None:
    refusal = exposure_refusal(settings(host=host))
    assert refusal is not None
    assert host in refusal
    assert "ASKSTREAM_TOKENS_FILE" in refusal
    assert "--insecure" in refusal


def test_tokens_or_insecure_let_a_public_address_serve(caplog: pytest.LogCaptureFixture) -> None:
    assert exposure_refusal(settings(host="0.0.0.0", tokens=f"alice:{ALICE}")) is None
    assert not caplog.records
    with caplog.at_level(logging.WARNING, logger="askstream"):
        assert exposure_refusal(settings(host="0.0.0.0", insecure=True)) is None
    assert "--insecure" in caplog.text
    assert "anyone" in caplog.text


def test_serve_refuses_to_start_on_a_public_address(tmp_path: Path) -> None:
    # It stops before binding anything.
    result = subprocess.run(
        [sys.executable, "-m", "askstream.cli", "serve", "--host", "0.0.0.0", "--port", "1"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("askstream: refusing to serve 0.0.0.0 with no tokens")


@pytest.mark.parametrize(
    ("tokens", "message"),
    [
        ("alice", "pair 1 is not user:token"),
        ("alice:short", "at least 16 characters"),
        ("al ice:" + "x" * 20, "user name"),
        (f"alice:{ALICE},bob:{ALICE}", "two users share one token"),
    ],
)
def test_a_malformed_token_list_stops_the_start_without_showing_tokens(
    tokens: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        Settings.from_env({"ASKSTREAM_TOKENS": tokens})
    assert ALICE not in str(caught.value)
    assert "short" not in str(caught.value).split(":")[-1]
