"""Fixtures for the browser tests: Debian's Chromium driven by Playwright, and the
services it talks to, each a real uvicorn process on a free loopback port.

Playwright never downloads a browser here: it launches ``/usr/bin/chromium``
(``.ci/setup-tools`` installs it). Without it the tests skip loudly, or fail
under ``CI=true``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from askstream.testing import ServerProcess, require

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SERVICE_APP = "askstream.service:create_app"
UPSTREAM_APP = "askstream.testing:FakeUpstream.from_env"
PAGES_APP = "tests.web.pages:create"

# What the fake model answers: Markdown around HTML that must stay text.
HOSTILE_ANSWER = (
    "Here is **bold**, *emphasis* and `<b>code</b>`:\n\n"
    "- <img src=x onerror=alert(1)>\n"
    "- <script>window.pwned = 1; alert(2)</script>\n\n"
    "```html\n<script>alert(3)</script>\n```\n\n"
    "[a link](javascript:alert(4)) and the end."
)
FAIL_AFTER = 4

# Token mode (issue 11): each user's bearer token, as ASKSTREAM_TOKENS names them.
TOKENS = {
    "alice": "alice-Vb6tQ2rX9pLm",
    "bob": "bob-K8fJw3ZyN1cD",
    "carol": "carol-Hs5uE7aGq4Tn",
}


def _service(tmp: Path, **env: str) -> ServerProcess:
    server = ServerProcess(
        SERVICE_APP,
        factory=True,
        env={"ASKSTREAM_DATA_DIR": str(tmp), "ASKSTREAM_LOG_LEVEL": "warning", **env},
    )
    server.start()
    return server


@pytest.fixture(scope="module")
def demo_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The service with the offline demo model, streaming a piece every 30 ms."""
    yield from _running(_service(tmp_path_factory.mktemp("demo"), ASKSTREAM_DEMO_DELAY="0.03"))


@pytest.fixture(scope="module")
def token_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The demo service in token mode: every /api call needs one of TOKENS."""
    yield from _running(
        _service(
            tmp_path_factory.mktemp("tokens"),
            ASKSTREAM_DEMO_DELAY="0.03",
            ASKSTREAM_TOKENS=",".join(f"{user}:{token}" for user, token in TOKENS.items()),
        )
    )


@pytest.fixture(scope="module")
def fast_token_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """Token mode with a demo model that answers at once: for making many chats."""
    yield from _running(
        _service(
            tmp_path_factory.mktemp("fast-tokens"),
            ASKSTREAM_DEMO_DELAY="0",
            ASKSTREAM_TOKENS=",".join(f"{user}:{token}" for user, token in TOKENS.items()),
        )
    )


@pytest.fixture(scope="module")
def docs_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The demo service with its API reference page on (ASKSTREAM_API_DOCS)."""
    yield from _running(_service(tmp_path_factory.mktemp("docs"), ASKSTREAM_API_DOCS="true"))


@pytest.fixture(scope="module")
def another_site() -> Iterator[ServerProcess]:
    """A site on another loopback port (another origin) that no service allows."""
    with ServerProcess(PAGES_APP, factory=True) as server:
        yield server


@pytest.fixture(scope="module")
def allowed_site() -> Iterator[ServerProcess]:
    """A site on another loopback port that ``cors_service`` allows."""
    with ServerProcess(PAGES_APP, factory=True) as server:
        yield server


@pytest.fixture(scope="module", params=["session", "token"])
def cors_service(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    allowed_site: ServerProcess,
) -> Iterator[ServerProcess]:
    """The demo service allowing ``allowed_site``'s origin (ASKSTREAM_CORS_ORIGINS),
    with anonymous sessions (``session``) or with TOKENS (``token``)."""
    env = {"ASKSTREAM_CORS_ORIGINS": allowed_site.url, "ASKSTREAM_DEMO_DELAY": "0.01"}
    if request.param == "token":
        env["ASKSTREAM_TOKENS"] = ",".join(f"{user}:{token}" for user, token in TOKENS.items())
    yield from _running(_service(tmp_path_factory.mktemp(f"cors-{request.param}"), **env))


@pytest.fixture(scope="module")
def fake_upstream() -> Iterator[ServerProcess]:
    """A fake OpenAI-compatible API answering HOSTILE_ANSWER; model ``fake-fail`` fails."""
    server = ServerProcess(
        UPSTREAM_APP,
        factory=True,
        env={
            "ASKSTREAM_FAKE_ANSWER": HOSTILE_ANSWER,
            "ASKSTREAM_FAKE_DELAY": "0.01",
            "ASKSTREAM_FAKE_FAIL_AFTER": str(FAIL_AFTER),
        },
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _running(server: ServerProcess) -> Iterator[ServerProcess]:
    """A fixture's body: ``server`` (started), stopped when the fixture ends."""
    try:
        yield server
    finally:
        server.stop()


def _llm_service(tmp: Path, upstream: ServerProcess, model: str) -> ServerProcess:
    return _service(tmp, ASKSTREAM_LLM_URL=f"{upstream.url}/v1", ASKSTREAM_LLM_MODEL=model)


@pytest.fixture(scope="module")
def hostile_service(
    tmp_path_factory: pytest.TempPathFactory, fake_upstream: ServerProcess
) -> Iterator[ServerProcess]:
    """The service in front of the fake upstream that answers HTML."""
    yield from _running(_llm_service(tmp_path_factory.mktemp("hostile"), fake_upstream, "fake"))


@pytest.fixture(scope="module")
def failing_service(
    tmp_path_factory: pytest.TempPathFactory, fake_upstream: ServerProcess
) -> Iterator[ServerProcess]:
    """The service in front of an upstream that fails after FAIL_AFTER pieces."""
    tmp = tmp_path_factory.mktemp("failing")
    yield from _running(_llm_service(tmp, fake_upstream, "fake-fail"))


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    require(os.path.exists(CHROMIUM), "Chromium (/usr/bin/chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


class Tab:
    """A page in a fresh browser context, with what it did that a test may check:
    JavaScript dialogs it opened, errors it threw or logged, every URL it requested,
    and each API request's method, URL and Authorization header."""

    def __init__(
        self, browser: Any, *, width: int = 1280, height: int = 800, bypass_csp: bool = False
    ) -> None:
        self.context = browser.new_context(
            viewport={"width": width, "height": height}, bypass_csp=bypass_csp
        )
        self.page = self.context.new_page()
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.stream_requests: list[tuple[str, str | None]] = []  # (url, Last-Event-ID)
        self.api_requests: list[tuple[str, str, str | None]] = []  # (method, url, Authorization)
        self.page.on("dialog", self._on_dialog)
        self.page.on("pageerror", lambda error: self.errors.append(f"pageerror: {error}"))
        self.page.on("console", self._on_console)
        self.page.on("request", self._on_request)

    def _on_request(self, request: Any) -> None:
        self.requests.append(request.url)
        if "/api/" in request.url:
            auth = request.headers.get("authorization")
            self.api_requests.append((request.method, request.url, auth))
        if "/api/streams/" in request.url and request.method == "GET":
            self.stream_requests.append((request.url, request.headers.get("last-event-id")))

    def _on_dialog(self, dialog: Any) -> None:
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    def _on_console(self, message: Any) -> None:
        if message.type == "error":
            self.errors.append(f"console: {message.text}")

    def open(self, url: str) -> Any:
        self.page.goto(url)
        self.page.wait_for_selector("html[data-ready]")
        return self.page

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def tab(browser: Any) -> Iterator[Tab]:
    tab = Tab(browser)
    try:
        yield tab
    finally:
        tab.close()


@pytest.fixture
def phone_tab(browser: Any) -> Iterator[Tab]:
    tab = Tab(browser, width=390, height=844)
    try:
        yield tab
    finally:
        tab.close()


def bearer(user: str) -> dict[str, str]:
    """The Authorization header of one of TOKENS' users."""
    return {"Authorization": f"Bearer {TOKENS[user]}"}


def session_headers(tab: Tab, server: ServerProcess) -> dict[str, str]:
    """The tab's cookies for ``server`` as a Cookie header: Python then acts as the
    same user as the page (each browser has its own anonymous session)."""
    cookies = "; ".join(f"{c['name']}={c['value']}" for c in tab.context.cookies(server.url))
    return {"Cookie": cookies} if cookies else {}


def stored_chat(
    server: ServerProcess, chat_id: str, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    """The chat as the service stored it, read as whoever ``headers`` name."""
    response = httpx.get(f"{server.url}/api/chats/{chat_id}", headers=headers)
    response.raise_for_status()
    chat: dict[str, Any] = response.json()
    return chat
