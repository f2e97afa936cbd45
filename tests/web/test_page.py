"""The chat page at ``GET /`` in a real Chromium, against the real service.

Each test drives the page as a person would (type, press Enter, reload, click
Stop) and checks the page against what the service stored.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

import askstream
from askstream.testing import ServerProcess

from .conftest import FAIL_AFTER, HOSTILE_ANSWER, Tab, session_headers, stored_chat

TIMEOUT = 15_000  # ms, for anything the page waits on

# Records every text the open answer shows while it streams, in the page.
WATCH_RENDERS = """
() => {
  window.__renders = [];
  new MutationObserver(() => {
    const answer = [...document.querySelectorAll(".message.assistant")].at(-1);
    if (!answer || answer.dataset.status !== "streaming") return;
    const text = answer.querySelector(".content").textContent;
    if (text && window.__renders.at(-1) !== text) window.__renders.push(text);
  }).observe(document.getElementById("messages"), {
    childList: true, subtree: true, characterData: true, attributes: true,
  });
}
"""


def ask(page: Any, question: str) -> None:
    page.fill("#question", question)
    page.press("#question", "Enter")


def last_answer(page: Any) -> Any:
    return page.locator(".message.assistant").last


def wait_status(page: Any, status: str) -> None:
    page.wait_for_selector(
        f".message.assistant:last-of-type[data-status={status}]", timeout=TIMEOUT
    )


def open_chat_id(page: Any) -> str:
    page.wait_for_function("() => location.hash.startsWith('#chat/')", timeout=TIMEOUT)
    chat_id: str = page.evaluate("decodeURIComponent(location.hash.slice('#chat/'.length))")
    return chat_id


def answer_message(server: ServerProcess, chat_id: str, tab: Tab) -> dict[str, Any]:
    """The chat's last message as stored, read as the tab's user."""
    headers = session_headers(tab, server)
    message: dict[str, Any] = stored_chat(server, chat_id, headers)["messages"][-1]
    assert message["role"] == "assistant"
    return message


def assert_clean(tab: Tab, server: ServerProcess) -> None:
    """No dialogs, no script errors, and nothing fetched from anywhere but the service."""
    assert tab.dialogs == []
    assert tab.errors == []
    origin = urlsplit(server.url)
    for url in tab.requests:
        parts = urlsplit(url)
        assert parts.scheme == "data" or (parts.hostname, parts.port) == (
            origin.hostname,
            origin.port,
        ), url


def test_an_answer_appears_piece_by_piece(tab: Tab, demo_service: ServerProcess) -> None:
    page = tab.open(demo_service.url)
    page.evaluate(WATCH_RENDERS)
    ask(page, "Why is the sky blue?")
    wait_status(page, "complete")

    chat_id = open_chat_id(page)
    stored = answer_message(demo_service, chat_id, tab)
    assert stored["status"] == "complete"
    final = last_answer(page).locator(".content").text_content()
    assert final == stored["content"]
    renders: list[str] = page.evaluate("window.__renders")
    partial = [text for text in renders if text != final]
    assert len(set(partial)) >= 3, renders
    for text in partial:
        assert final.startswith(text), (text, final)
    assert page.locator(".message.user .content").text_content() == "Why is the sky blue?"
    # The new chat is in the list, open, and titled by its question.
    assert page.locator(f'.chat-item[data-chat-id="{chat_id}"][aria-current=page]').count() == 1
    assert_clean(tab, demo_service)


# Counts the page's writes to sessionStorage's "askstream.active", from the start.
COUNT_SAVES = """
window.__saves = 0;
const setItem = Storage.prototype.setItem;
Storage.prototype.setItem = function (key, value) {
  if (this === sessionStorage && key === "askstream.active") window.__saves += 1;
  return setItem.call(this, key, value);
};
"""


def test_a_reload_mid_answer_resumes_without_repeating(
    tab: Tab, demo_service: ServerProcess
) -> None:
    tab.context.add_init_script(COUNT_SAVES)
    page = tab.open(demo_service.url)
    page.evaluate(WATCH_RENDERS)
    ask(page, "Tell me a story")
    page.wait_for_function(
        "() => document.querySelector('.message.assistant .content')?.textContent.length > 40",
        timeout=TIMEOUT,
    )
    chat_id = open_chat_id(page)
    # Many pieces shown, and the growing answer never written to storage: it is
    # saved when the page is left (the reload's pagehide), not once per piece.
    assert page.evaluate("window.__renders.length") >= 3
    assert page.evaluate("window.__saves") == 0
    page.reload()
    page.wait_for_selector("html[data-ready]")
    stored = answer_message(demo_service, chat_id, tab)
    assert stored["status"] == "streaming", "reloaded too late"
    # The page picks the answer up where it was and finishes it.
    wait_status(page, "complete")
    stored = answer_message(demo_service, chat_id, tab)
    assert stored["status"] == "complete"
    assert page.locator(".message.assistant").count() == 1
    assert last_answer(page).locator(".content").text_content() == stored["content"]
    # It resumed after the last event it had shown, not from the start.
    [(url, last_event_id)] = tab.stream_requests
    assert url.endswith(f"/api/streams/{stored['messageId']}")
    assert last_event_id
    # Once finished, nothing of it is left in storage.
    assert page.evaluate("sessionStorage.getItem('askstream.active')") is None
    assert_clean(tab, demo_service)


def test_another_tab_follows_an_answer_from_its_start(
    browser: Any, tab: Tab, demo_service: ServerProcess
) -> None:
    # A fresh context has no saved progress: it replays the stream from the start,
    # replacing the partial text the service had stored.
    page = tab.open(demo_service.url)
    ask(page, "Tell me another story")
    page.wait_for_function(
        "() => document.querySelector('.message.assistant .content')?.textContent.length > 40",
        timeout=TIMEOUT,
    )
    chat_id = open_chat_id(page)
    other = Tab(browser)
    other.context.add_cookies(tab.context.cookies())  # the same person: the same session
    try:
        second = other.open(f"{demo_service.url}/#chat/{chat_id}")
        status = answer_message(demo_service, chat_id, tab)["status"]
        assert status == "streaming", "opened too late"
        wait_status(second, "complete")
        stored = answer_message(demo_service, chat_id, tab)
        assert last_answer(second).locator(".content").text_content() == stored["content"]
        [(url, last_event_id)] = other.stream_requests
        assert url.endswith(f"/api/streams/{stored['messageId']}")
        assert last_event_id is None
        assert_clean(other, demo_service)
    finally:
        other.close()
    wait_status(page, "complete")


@pytest.mark.parametrize("csp", [True, False], ids=["with-csp", "renderer-alone"])
def test_model_html_is_shown_as_text_and_never_runs(
    browser: Any, hostile_service: ServerProcess, csp: bool
) -> None:
    # The page's Content-Security-Policy would block inline handlers and scripts
    # anyway; without it, the renderer alone must keep them inert.
    tab = Tab(browser, bypass_csp=not csp)
    try:
        check_hostile_answer(tab, hostile_service)
    finally:
        tab.close()


def check_hostile_answer(tab: Tab, hostile_service: ServerProcess) -> None:
    page = tab.open(hostile_service.url)
    page.evaluate("window.pwned = 0")
    ask(page, "Show me some HTML")
    wait_status(page, "complete")
    content = last_answer(page).locator(".content")

    text = content.text_content()
    assert "<img src=x onerror=alert(1)>" in text
    assert "<script>window.pwned = 1; alert(2)</script>" in text
    assert "<script>alert(3)</script>" in text
    # Markdown became elements; the HTML inside it did not.
    assert content.locator("img, script, iframe, object, embed, b").count() == 0
    assert content.locator("strong").text_content() == "bold"
    assert content.locator("em").text_content() == "emphasis"
    assert content.locator("p code").text_content() == "<b>code</b>"
    assert content.locator("li").all_text_contents() == [
        "<img src=x onerror=alert(1)>",
        "<script>window.pwned = 1; alert(2)</script>",
    ]
    assert content.locator("pre code").text_content() == "<script>alert(3)</script>"
    assert content.locator("a").count() == 0  # a javascript: link keeps its text only
    assert "a link" in text
    page.wait_for_timeout(300)  # an onerror would fire by now
    assert page.evaluate("window.pwned") == 0
    assert_clean(tab, hostile_service)


def test_an_upstream_failure_shows_the_error_inline(
    tab: Tab, failing_service: ServerProcess
) -> None:
    page = tab.open(failing_service.url)
    ask(page, "This will fail")
    wait_status(page, "failed")

    chat_id = open_chat_id(page)
    stored = answer_message(failing_service, chat_id, tab)
    assert stored["status"] == "failed"
    # The error the stream ended with is what the page shows.
    replay = read_events(
        f"{failing_service.url}/api/streams/{stored['messageId']}",
        session_headers(tab, failing_service),
    )
    assert replay[-1]["event"] == "error"
    error = json.loads(replay[-1]["data"])
    shown = last_answer(page).locator(".error")
    assert shown.is_visible()
    assert shown.text_content() == error["message"]
    # What streamed before the failure stays.
    assert len(read_events_of(replay, "message")) == FAIL_AFTER
    assert HOSTILE_ANSWER.startswith(stored["content"])
    assert last_answer(page).locator(".content").text_content().startswith("Here is")
    assert_clean(tab, failing_service)


def test_an_error_before_streaming_shows_the_server_message(
    tab: Tab, demo_service: ServerProcess
) -> None:
    page = tab.open(demo_service.url)
    ask(page, "First question")
    wait_status(page, "complete")
    chat_id = open_chat_id(page)
    # The chat goes away behind the page's back: the next ask is a 404 with a message.
    session = session_headers(tab, demo_service)
    assert httpx.delete(f"{demo_service.url}/api/chats/{chat_id}", headers=session).is_success
    ask(page, "Second question")
    wait_status(page, "failed")
    response = httpx.post(
        f"{demo_service.url}/api/ask",
        json={"chatId": chat_id, "question": "again"},
        headers=session,
    )
    assert response.status_code == 404
    assert last_answer(page).locator(".error").text_content() == response.json()["message"]
    assert tab.dialogs == []


def test_stop_leaves_the_message_cancelled(tab: Tab, demo_service: ServerProcess) -> None:
    page = tab.open(demo_service.url)
    page.evaluate(WATCH_RENDERS)
    ask(page, "Talk for a long time")
    page.wait_for_function("() => window.__renders.length >= 3", timeout=TIMEOUT)
    page.click("#stop")
    wait_status(page, "cancelled")

    chat_id = open_chat_id(page)
    stored = answer_message(demo_service, chat_id, tab)
    assert stored["status"] == "cancelled"
    shown = last_answer(page).locator(".content").text_content()
    assert shown == stored["content"]
    assert len(shown) > 0
    assert page.locator("#send").is_visible()
    assert page.locator("#stop").is_hidden()
    # After a reload it is still shown stopped, and the page asks again.
    page.reload()
    wait_status(page, "cancelled")
    assert last_answer(page).locator(".meta").text_content() == "Stopped"
    assert_clean(tab, demo_service)


# The browser's own EventSource on a stream URL, collecting what it dispatches.
EVENT_SOURCE = """
(url) => {
  window.__events = null;
  const got = [];
  const source = new EventSource(url);
  const keep = (e) => got.push({event: e.type, data: e.data, id: e.lastEventId});
  const end = () => { source.close(); window.__events = got; };
  source.addEventListener("message", keep);
  source.addEventListener("done", (e) => { keep(e); end(); });
  // An "error" with data is the service's error event; without, the connection's.
  source.addEventListener("error", (e) => { if (e.data !== undefined) keep(e); end(); });
}
"""


def test_native_event_source_gets_the_python_clients_events(
    tab: Tab, demo_service: ServerProcess
) -> None:
    page = tab.open(demo_service.url)
    # Start an answer from Python and learn its stream URL from the response's headers.
    session = session_headers(tab, demo_service)  # the page's user, who may read the stream
    with httpx.stream(
        "POST",
        f"{demo_service.url}/api/ask",
        json={"chatId": None, "question": "Count"},
        headers=session,
    ) as response:
        assert response.status_code == 200
        location = response.headers["Content-Location"]
        # Both readers join while it streams; each replays from the start, then follows.
        page.evaluate(EVENT_SOURCE, location)
        python = read_events(demo_service.url + location, session)
    page.wait_for_function("() => window.__events !== null", timeout=TIMEOUT)
    browser_events = page.evaluate("window.__events")
    assert len(python) > 10
    assert python[-1]["event"] == "done"
    assert browser_events == python
    assert_clean(tab, demo_service)


def read_events_of(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [event for event in events if event["event"] == kind]


def read_events(url: str, headers: dict[str, str]) -> list[dict[str, Any]]:
    """Every event askstream's Python client reads from ``url``, as a browser shows them."""
    with askstream.connect(
        "GET",
        url,
        headers=headers,
        until={"done", "error"},
        timeout=httpx.Timeout(TIMEOUT / 1000),
    ) as source:
        events = list(source)
    return [{"event": e.event, "data": e.data, "id": e.id or ""} for e in events]


def test_phone_width_has_a_drawer_and_no_sideways_scroll(
    phone_tab: Tab, demo_service: ServerProcess
) -> None:
    page = phone_tab.open(demo_service.url)
    ask(page, "Hello from a phone")
    wait_status(page, "complete")
    assert page.evaluate("document.scrollingElement.scrollWidth") <= 390
    sidebar = page.locator("#sidebar")
    assert sidebar.bounding_box()["x"] + sidebar.bounding_box()["width"] <= 0  # off screen
    composer = page.locator("#composer").bounding_box()
    assert composer["y"] + composer["height"] <= 844
    page.click("#menu")
    page.wait_for_function(
        "() => document.getElementById('sidebar').getBoundingClientRect().x >= 0",
        timeout=TIMEOUT,
    )
    page.locator(".chat-link").first.click()
    page.wait_for_function(
        "() => document.getElementById('sidebar').getBoundingClientRect().right <= 0",
        timeout=TIMEOUT,
    )
    assert_clean(phone_tab, demo_service)


# ---------------------------------------------------------------- as a first-time reader sees it

# Every layout shift Chromium reports from now on (Layout Instability API), with
# the elements that moved.
WATCH_SHIFTS = """
() => {
  window.__shifts = [];
  new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      window.__shifts.push({
        value: entry.value,
        moved: entry.sources.map((s) => s.node?.id || s.node?.className || s.node?.nodeName || "?"),
      });
    }
  }).observe({ type: "layout-shift" });
}
"""

# The composer's geometry: Send's and Stop's boxes, the input's width, and which
# button shows.
COMPOSER = """
() => {
  const box = (id) => {
    const r = document.getElementById(id).getBoundingClientRect();
    return [r.x, r.y, r.width, r.height];
  };
  return {
    send: box("send"),
    stop: box("stop"),
    input: document.getElementById("question").getBoundingClientRect().width,
    shown: ["send", "stop"].filter((id) =>
      document.getElementById(id).checkVisibility({ visibilityProperty: true })
    ),
  };
}
"""

# Two frames: layout-shift entries of the frames before are delivered by then.
FRAMES = "() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)))"


def shifts_so_far(page: Any) -> list[dict[str, Any]]:
    page.evaluate(FRAMES)
    shifts: list[dict[str, Any]] = page.evaluate("window.__shifts")
    return shifts


def test_send_and_stop_swap_without_moving_anything(
    browser: Any, demo_service: ServerProcess
) -> None:
    # Short enough that the answer overflows and the messages get a scroll bar.
    tab = Tab(browser, width=1100, height=480)
    try:
        page = tab.open(demo_service.url)
        page.evaluate(WATCH_SHIFTS)
        for question in ("Why is the sky blue?", "And why are sunsets red?"):
            before = page.evaluate(COMPOSER)
            ask(page, question)
            page.wait_for_selector("#stop", state="visible", timeout=TIMEOUT)
            during = page.evaluate(COMPOSER)
            wait_status(page, "complete")
            page.wait_for_selector("#send", state="visible", timeout=TIMEOUT)
            after = page.evaluate(COMPOSER)
            assert (before["shown"], during["shown"], after["shown"]) == (
                ["send"],
                ["stop"],
                ["send"],
            )
            assert before["send"] == during["stop"] == after["send"]
            assert before["input"] == during["input"] == after["input"]
            assert shifts_so_far(page) == [], question
        overflowing = "(m) => m.scrollHeight > m.clientHeight"
        assert page.locator("#messages").evaluate(overflowing)
        # The observer does see a shift: one of the composer's own, made here.
        page.evaluate("document.getElementById('question').style.marginLeft = '60px'")
        assert any("question" in shift["moved"] for shift in shifts_so_far(page))
        assert_clean(tab, demo_service)
    finally:
        tab.close()


def test_stop_takes_the_focus_send_had(tab: Tab, demo_service: ServerProcess) -> None:
    page = tab.open(demo_service.url)
    page.fill("#question", "Talk for a while")
    page.focus("#send")
    page.keyboard.press("Enter")  # a keyboard user sends with the button
    page.wait_for_selector("#stop", state="visible", timeout=TIMEOUT)
    assert page.evaluate("document.activeElement.id") == "stop"
    page.keyboard.press("Enter")  # and stops with the same key
    wait_status(page, "cancelled")
    page.wait_for_selector("#send", state="visible", timeout=TIMEOUT)
    assert page.evaluate("document.activeElement.id") == "send"
    assert_clean(tab, demo_service)


def test_each_message_says_who_wrote_it(tab: Tab, demo_service: ServerProcess) -> None:
    page = tab.open(demo_service.url)
    ask(page, "Who are you?")
    wait_status(page, "complete")
    assert page.locator(".message.user .sender").text_content() == "You"
    assert page.locator(".message.assistant .sender").text_content() == "Assistant"
    assert page.locator(".message.user .sender").is_visible()
    # Named so for screen readers too: each message is an article named by its sender.
    assert page.get_by_role("article", name="You").count() == 1
    assert page.get_by_role("article", name="Assistant").count() == 1
    # The label is not part of the message's text.
    assert page.locator(".message.user .content").text_content() == "Who are you?"
    # Opened again from the stored chat, the labels are there as well.
    page.reload()
    wait_status(page, "complete")
    senders = page.locator(".message .sender").all_text_contents()
    assert senders == ["You", "Assistant"]
    assert_clean(tab, demo_service)


# Words that explain the machinery rather than what to do.
JARGON = re.compile(
    r"\b(?:sse|server-sent|event|stream|endpoint|api|http|json|token|reload|resume|"
    r"markdown|backend|llm)\w*",
    re.IGNORECASE,
)


def test_the_welcome_says_what_this_is_and_what_to_type(
    tab: Tab, demo_service: ServerProcess
) -> None:
    page = tab.open(demo_service.url)
    welcome = page.locator("#welcome")
    assert welcome.is_visible()
    text = " ".join(welcome.inner_text().split())
    assert JARGON.findall(text) == [], text
    assert "question" in text
    assert "Enter" in text
    # An example question goes into the box, to send or change; it is not sent.
    example = page.locator("#welcome .suggestion").first
    example.click()
    assert page.input_value("#question") == example.text_content().strip()
    assert page.evaluate("document.activeElement.id") == "question"
    assert page.locator(".message").count() == 0
    page.press("#question", "Enter")
    wait_status(page, "complete")
    assert welcome.is_hidden()
    # A new chat greets the same way.
    page.click("#new-chat")
    assert welcome.is_visible()
    assert_clean(tab, demo_service)
