"""A thinking model's reasoning on the page: folded in a "Thinking" block above the
answer, streamed as it comes, never part of the answer, shown again from the
history. Real Chromium, real service, the fake upstream's ``think`` mode."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from askstream.testing import ServerProcess

from .conftest import HOSTILE_ANSWER, Tab, _llm_service, _running, session_headers, stored_chat
from .test_page import answer_message, ask, assert_clean, last_answer, open_chat_id, wait_status

# Collects every reasoning text the open answer's Thinking block shows while
# the answer has no text yet: the thoughts are on the page before the answer.
WATCH_THOUGHTS = """
() => {
  window.__thoughts = [];
  new MutationObserver(() => {
    const answer = [...document.querySelectorAll(".message.assistant")].at(-1);
    const thoughts = answer?.querySelector(".thinking .reasoning")?.textContent;
    const text = answer?.querySelector(".content").textContent;
    const seen = window.__thoughts;
    if (thoughts && !text && seen.at(-1) !== thoughts) seen.push(thoughts);
  }).observe(document.getElementById("messages"), {
    childList: true, subtree: true, characterData: true,
  });
}
"""


@pytest.fixture(scope="module")
def thinking_service(
    tmp_path_factory: pytest.TempPathFactory, fake_upstream: ServerProcess
) -> Iterator[ServerProcess]:
    """The service in front of a model that thinks aloud before it answers."""
    tmp = tmp_path_factory.mktemp("thinking")
    yield from _running(_llm_service(tmp, fake_upstream, "fake-think"))


def thinking(page: Any) -> Any:
    return last_answer(page).locator("details.thinking")


def test_reasoning_is_folded_above_the_answer(tab: Tab, thinking_service: ServerProcess) -> None:
    page = tab.open(thinking_service.url)
    page.evaluate(WATCH_THOUGHTS)
    question = "Is <b>this</b> bold?"
    ask(page, question)
    wait_status(page, "complete")
    chat_id = open_chat_id(page)
    stored = answer_message(thinking_service, chat_id, tab)
    thought = f"Thinking about: {question}"
    assert stored["reasoning"] == thought

    block = thinking(page)
    assert block.count() == 1
    assert block.get_attribute("open") is None  # folded
    assert block.locator("summary").text_content() == "Thinking"
    assert block.locator(".reasoning").text_content() == thought  # as text: no <b> made
    assert block.locator(".reasoning b").count() == 0
    assert not block.locator(".reasoning").is_visible()
    # Above the answer, which has none of it.
    order = last_answer(page).evaluate(
        "(node) => [...node.children].map((child) => child.className)"
    )
    assert order.index("thinking") < order.index("content")
    content = last_answer(page).locator(".content").text_content()
    assert "Thinking about" not in content
    assert content.startswith("Here is bold")
    # Streamed piece by piece before the answer began.
    seen: list[str] = page.evaluate("window.__thoughts")
    assert len(seen) >= 3, seen
    assert all(thought.startswith(text) for text in seen)
    # Unfolded on a click.
    block.locator("summary").click()
    assert block.get_attribute("open") is not None
    assert block.locator(".reasoning").is_visible()
    # The question has no such block.
    assert page.locator(".message.user details").count() == 0
    assert_clean(tab, thinking_service)


def test_reasoning_comes_back_folded_from_the_history(
    tab: Tab, thinking_service: ServerProcess
) -> None:
    page = tab.open(thinking_service.url)
    ask(page, "Think first")
    wait_status(page, "complete")
    chat_id = open_chat_id(page)
    page.reload()
    page.wait_for_selector("html[data-ready]")
    wait_status(page, "complete")
    block = thinking(page)
    assert block.get_attribute("open") is None
    assert block.locator(".reasoning").text_content() == "Thinking about: Think first"
    stored = stored_chat(thinking_service, chat_id, session_headers(tab, thinking_service))
    assert last_answer(page).locator(".content").text_content().startswith("Here is bold")
    assert stored["messages"][-1]["content"] == HOSTILE_ANSWER
    assert_clean(tab, thinking_service)
