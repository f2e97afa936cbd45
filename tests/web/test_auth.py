"""Who the page asks as (issue 11), in a real Chromium against the real service.

In token mode (``ASKSTREAM_TOKENS``) the page asks for a token once, keeps it,
and sends ``Authorization: Bearer`` on every call and stream; a refused token is
forgotten and asked for again. In anonymous mode it never asks: its session
cookie does it. ``GET /api/chats`` comes a page at a time, with "Show more".
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from askstream.testing import ServerProcess

from .conftest import TOKENS, Tab, bearer, stored_chat
from .test_page import TIMEOUT, WATCH_RENDERS, ask, open_chat_id, wait_status

PAGE_SIZE = 50  # GET /api/chats' default page


def enter_token(page: Any, token: str) -> None:
    page.locator("#token-overlay").wait_for(state="visible", timeout=TIMEOUT)
    page.fill("#token", token)
    page.press("#token", "Enter")


def stored_token(page: Any) -> str | None:
    token: str | None = page.evaluate("localStorage.getItem('askstream.token')")
    return token


def remember(tab: Tab, user: str) -> None:
    """Start the tab as if its person had entered ``user``'s token on an earlier visit."""
    tab.page.add_init_script(f"localStorage.setItem('askstream.token', {json.dumps(TOKENS[user])})")


def authorizations(tab: Tab) -> list[str | None]:
    return [auth for _method, _url, auth in tab.api_requests]


def test_the_page_asks_for_a_token_once_and_keeps_it(
    tab: Tab, token_service: ServerProcess
) -> None:
    page = tab.page
    page.goto(token_service.url)
    # The service said 401 with WWW-Authenticate: Bearer: the page asks.
    enter_token(page, "not-a-token")
    # Refused: forgotten, and asked again with a word why.
    page.wait_for_selector("#token-error:not([hidden])", timeout=TIMEOUT)
    assert page.locator("#token-overlay").is_visible()
    assert stored_token(page) is None
    enter_token(page, TOKENS["alice"])
    page.wait_for_selector("html[data-ready]", timeout=TIMEOUT)
    assert page.locator("#token-overlay").is_hidden()
    assert stored_token(page) == TOKENS["alice"]

    ask(page, "Who am I?")
    wait_status(page, "complete")
    chat_id = open_chat_id(page)
    # The chat is Alice's: her token reads it, Bob's does not.
    assert stored_chat(token_service, chat_id, bearer("alice"))["chatId"] == chat_id
    response = httpx.get(f"{token_service.url}/api/chats/{chat_id}", headers=bearer("bob"))
    assert response.status_code == 404

    # A reload asks nothing: the token was kept.
    page.reload()
    page.wait_for_selector("html[data-ready]", timeout=TIMEOUT)
    assert page.locator("#token-overlay").is_hidden()
    assert page.locator(f'.chat-item[data-chat-id="{chat_id}"]').count() == 1

    # Without a token, then the wrong one, then (refused, forgotten) none, then
    # Alice's on every call from then on.
    sent = authorizations(tab)
    first = sent.index(f"Bearer {TOKENS['alice']}")
    assert sent[:first] == [None, "Bearer not-a-token", None]
    assert set(sent[first:]) == {f"Bearer {TOKENS['alice']}"}
    methods = {method for method, _url, _auth in tab.api_requests[first:]}
    assert methods == {"GET", "POST"}


def test_resume_stop_and_delete_carry_the_token(tab: Tab, token_service: ServerProcess) -> None:
    remember(tab, "bob")
    page = tab.page
    page.goto(token_service.url)
    page.wait_for_selector("html[data-ready]", timeout=TIMEOUT)
    page.evaluate(WATCH_RENDERS)
    ask(page, "Tell me a long story")
    page.wait_for_function("() => window.__renders.length >= 3", timeout=TIMEOUT)
    chat_id = open_chat_id(page)
    # A reload mid-answer resumes its stream with the token.
    page.reload()
    page.wait_for_selector("html[data-ready]", timeout=TIMEOUT)
    wait_status(page, "complete")
    [(stream_url, last_event_id)] = tab.stream_requests
    assert last_event_id

    # Stop cancels with the token.
    page.evaluate(WATCH_RENDERS)
    ask(page, "And another one")
    page.wait_for_function("() => window.__renders.length >= 3", timeout=TIMEOUT)
    page.click("#stop")
    wait_status(page, "cancelled")
    stored = stored_chat(token_service, chat_id, bearer("bob"))
    assert stored["messages"][-1]["status"] == "cancelled"

    # Delete, confirmed, with the token.
    tab.page.remove_listener("dialog", tab._on_dialog)
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator(f'.chat-item[data-chat-id="{chat_id}"] .delete').click()
    page.wait_for_selector(f'.chat-item[data-chat-id="{chat_id}"]', state="detached")
    response = httpx.get(f"{token_service.url}/api/chats/{chat_id}", headers=bearer("bob"))
    assert response.status_code == 404

    calls = {(method, url.split("?")[0]) for method, url, _auth in tab.api_requests}
    base = f"{token_service.url}/api"
    assert {
        ("GET", f"{base}/chats"),
        ("GET", f"{base}/chats/{chat_id}"),
        ("POST", f"{base}/ask"),
        ("GET", stream_url),
        ("POST", f"{base}/streams/{stored['messages'][-1]['messageId']}/cancel"),
        ("DELETE", f"{base}/chats/{chat_id}"),
    } <= calls
    assert set(authorizations(tab)) == {f"Bearer {TOKENS['bob']}"}
    assert tab.errors == []


def test_a_token_the_service_no_longer_takes_is_forgotten_and_asked_for(
    tab: Tab, token_service: ServerProcess
) -> None:
    tab.page.add_init_script("localStorage.setItem('askstream.token', 'revoked-token')")
    page = tab.page
    page.goto(token_service.url)
    enter_token(page, TOKENS["carol"])
    page.wait_for_selector("html[data-ready]", timeout=TIMEOUT)
    assert stored_token(page) == TOKENS["carol"]
    assert authorizations(tab) == [
        "Bearer revoked-token",
        None,
        f"Bearer {TOKENS['carol']}",
    ]


def test_anonymous_mode_never_asks_for_a_token(tab: Tab, demo_service: ServerProcess) -> None:
    page = tab.open(demo_service.url)
    ask(page, "Hello")
    wait_status(page, "complete")
    page.reload()
    page.wait_for_selector("html[data-ready]", timeout=TIMEOUT)
    assert page.locator("#token-overlay").is_hidden()
    assert stored_token(page) is None
    assert len(tab.api_requests) >= 3
    assert set(authorizations(tab)) == {None}
    assert tab.errors == []


def make_chats(server: ServerProcess, user: str, count: int) -> list[str]:
    """``count`` chats of ``user``'s, each with a whole answer; their ids."""
    ids: list[str] = []
    with httpx.Client(base_url=server.url, headers=bearer(user), timeout=30) as client:
        for number in range(count):
            response = client.post("/api/ask", json={"chatId": None, "question": f"Q{number}"})
            assert response.status_code == 200
            chat_id = json.loads(response.text.split("data: ", 1)[1].split("\n", 1)[0])["chatId"]
            ids.append(chat_id)
    return ids


def test_show_more_lists_the_next_page_of_chats(
    tab: Tab, fast_token_service: ServerProcess
) -> None:
    carols = make_chats(fast_token_service, "carol", PAGE_SIZE + 3)
    [bobs] = make_chats(fast_token_service, "bob", 1)
    remember(tab, "carol")
    page = tab.open(fast_token_service.url)
    items = page.locator(".chat-item")
    assert items.count() == PAGE_SIZE
    more = page.locator("#more-chats")
    assert more.is_visible()
    more.click()
    page.wait_for_function(
        f"() => document.querySelectorAll('.chat-item').length > {PAGE_SIZE}", timeout=TIMEOUT
    )
    assert more.is_hidden()  # nextCursor null: that was the last page
    shown = [items.nth(i).get_attribute("data-chat-id") for i in range(items.count())]
    assert sorted(shown) == sorted(carols)  # all of Carol's, once each, and none of Bob's
    assert bobs not in shown
    [(_, next_page, _)] = [r for r in tab.api_requests if "cursor=" in r[1]]
    assert next_page.startswith(f"{fast_token_service.url}/api/chats?cursor=")
    assert tab.errors == []
