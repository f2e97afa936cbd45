"""The Markdown renderer in Chromium: hostile answers, streaming, and chat titles.

The issue-16 inputs (3,000 and 10,000 nested quotes, 64 KiB of ``[`` or ``_a ``)
go through the real service and page: asked, streamed into the page, then the
chat opened again. The tab must stay alive and answer, the DOM's nesting must
stay capped. How fast is bench/bench_markdown.py's business: no timings here,
only bounded waits.
"""

from __future__ import annotations

import mimetypes
import random
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import askstream
from askstream.testing import ServerProcess

from .conftest import UPSTREAM_APP, Tab, _service

TIMEOUT = 30_000  # ms: a bound on waits, not a timing
WEB = Path(askstream.__file__).parent / "web"
K64 = 64 * 1024
MAX_DEPTH = 2 * 20 + 4  # MAX_NESTING blocks and as many spans, in .content > div

# Around each hostile input: HTML that must stay text (the XSS checks of test_page.py).
XSS = "<img src=x onerror=window.pwned=1> <script>window.pwned=2</script>"

HOSTILE = {
    "3000-quotes": "> " * 3000 + "deep",
    "10000-quotes": "> " * 10000 + "deep",
    "64KiB-brackets": "[" * K64,
    "64KiB-underscores": "_a " * (K64 // 3),
}

# The depth of the deepest element under a node, walked without recursion.
DEPTH = """
(node) => {
  let deepest = 0;
  const todo = [[node, 0]];
  while (todo.length) {
    const [n, d] = todo.pop();
    if (d > deepest) deepest = d;
    for (const c of n.children) todo.push([c, d + 1]);
  }
  return deepest;
}
"""


@pytest.fixture(scope="module")
def echo_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The service in front of a fake upstream that answers "Echo: <question>", at once,
    taking questions up to 256 KiB."""
    upstream = ServerProcess(UPSTREAM_APP, factory=True, env={"ASKSTREAM_FAKE_DELAY": "0"})
    upstream.start()
    try:
        server = _service(
            tmp_path_factory.mktemp("echo"),
            ASKSTREAM_LLM_URL=f"{upstream.url}/v1",
            ASKSTREAM_LLM_MODEL="echo",
            ASKSTREAM_MAX_BODY_SIZE=str(256 * 1024),
        )
        try:
            yield server
        finally:
            server.stop()
    finally:
        upstream.stop()


def assert_alive(tab: Tab) -> None:
    """The tab answers script, threw nothing and logged no error."""
    assert tab.page.evaluate("1 + 1") == 2
    assert tab.errors == []
    assert tab.dialogs == []


@pytest.mark.parametrize("name", list(HOSTILE))
def test_a_hostile_answer_streams_and_opens_without_hanging_the_tab(
    tab: Tab, echo_service: ServerProcess, name: str
) -> None:
    hostile = HOSTILE[name]
    page = tab.open(echo_service.url)
    page.set_default_timeout(TIMEOUT)
    page.evaluate("window.pwned = 0")
    # "Echo: x" first, so the hostile text starts a line of its own.
    page.evaluate(
        "(q) => { const box = document.getElementById('question'); box.value = q; }",
        f"x {XSS}\n\n{hostile}{XSS}",
    )
    page.click("#send")
    page.wait_for_selector(".message.assistant[data-status=complete]")
    streamed = page.locator(".message.assistant .content")
    assert page.evaluate(DEPTH, streamed.element_handle()) <= MAX_DEPTH
    assert streamed.locator("img, script").count() == 0
    assert XSS in streamed.text_content()
    assert page.evaluate("window.pwned") == 0
    assert_alive(tab)

    # Opening the chat again renders the stored answer in one go.
    page.wait_for_function("() => location.hash.startsWith('#chat/')")
    page.reload()
    page.wait_for_selector("html[data-ready]")
    page.wait_for_selector(".message.assistant[data-status=complete]")
    opened = page.locator(".message.assistant .content")
    assert page.evaluate(DEPTH, opened.element_handle()) <= MAX_DEPTH
    assert opened.locator("img, script").count() == 0
    text = opened.text_content()
    assert text.startswith(f"Echo: x {XSS}")
    if "quotes" in name:
        assert opened.locator("blockquote").count() > 0
    else:
        # One paragraph of the text as sent, less what was markup.
        assert len(text) >= len(hostile.replace("_", "")) // 2
        assert XSS in text
    page.wait_for_timeout(300)  # an onerror would have fired by now
    assert page.evaluate("window.pwned") is None  # reloaded: never set, never run
    assert_alive(tab)


def test_chat_titles_are_plain_text_with_the_full_title_on_hover(
    tab: Tab, demo_service: ServerProcess
) -> None:
    page = tab.open(demo_service.url)
    question = "**Bold** <img src=x onerror=alert(1)> question about `code` " + "and more " * 12
    page.fill("#question", question)
    page.press("#question", "Enter")
    page.wait_for_selector(".message.assistant[data-status=complete]", timeout=TIMEOUT)
    link = page.locator(".chat-link").first
    page.wait_for_function(
        "() => document.querySelector('.chat-link')?.textContent.startsWith('Bold')",
        timeout=TIMEOUT,
    )
    # The service keeps a question's first 100 characters as its title.
    title = question[:100]
    assert "<img" in title
    without_markup = re.sub(r"<[^>]*>", " ", title).replace("**", "").replace("`", "")
    expected = " ".join(without_markup.split())
    assert expected.startswith("Bold question about code and more")
    assert link.text_content() == expected
    # The list shows what fits, cut with an ellipsis; the whole title is on hover.
    assert link.evaluate("(a) => a.scrollWidth > a.clientWidth")
    assert link.get_attribute("title").split("\n")[0] == expected
    assert page.locator(".chat-link img, .chat-link strong").count() == 0
    assert page.locator("#chat-title").text_content() == expected
    assert page.evaluate("document.title") == f"{expected} · askstream"
    assert_alive(tab)


# ---------------------------------------------------------------- markdown.js alone

ORIGIN = "http://markdown.localhost"
PAGE = (
    '<!doctype html><html><head><meta charset="utf-8"><link rel="icon" href="data:,">'
    '</head><body><div id="out"></div></body></html>'
)


@pytest.fixture
def md_page(browser: Any) -> Iterator[Any]:
    """A blank page with markdown.js imported as ``window.md``, files from the package."""
    page = browser.new_page()

    def serve(route: Any) -> None:
        path = route.request.url[len(ORIGIN) :]
        if path == "/":
            route.fulfill(body=PAGE, content_type="text/html")
            return
        file = WEB / path.lstrip("/")
        if ".." in path or not file.is_file():
            route.fulfill(status=404, body="")
            return
        route.fulfill(body=file.read_bytes(), content_type=mimetypes.guess_type(file.name)[0])

    page.route(f"{ORIGIN}/**", serve)
    page.goto(f"{ORIGIN}/")
    page.evaluate("async () => { window.md = await import('/markdown.js'); }")
    try:
        yield page
    finally:
        page.close()


ANSWER = """# Title

A paragraph with **bold**, *em*, `code` and https://en.wikipedia.org/wiki/Foo_(bar).
A second line of it.

- one
- two with [a link](https://example.com/a_(b))
  - nested

1. first

2. second, loose

> a quote
continued lazily

```python
def f(a, b):
    return a < b  # <script>alert(1)</script>
```

| name | n |
|------|--:|
| a    | 1 |
| <b>b</b> | 2 |

Setext heading
---

    indented code

Last paragraph <img src=x onerror=alert(1)>."""

# Stream `pieces` into one element with appendTo, finish with renderInto, and
# render the whole text into another: both DOMs, as HTML.
STREAM = """
(pieces) => {
  const live = document.createElement('div');
  const once = document.createElement('div');
  document.getElementById('out').replaceChildren(live, once);
  let text = '';
  const seen = [];
  for (const piece of pieces) {
    text += piece;
    md.appendTo(live, piece);
    seen.push(live.textContent);
  }
  md.renderInto(live, text);
  md.renderInto(once, text);
  return { live: live.innerHTML, once: once.innerHTML, seen, text: once.textContent };
}
"""


def chunkings(text: str) -> Iterator[list[str]]:
    yield [text]
    yield list(text)  # a character at a time
    yield text.splitlines(keepends=True)
    rng = random.Random(16)
    for _ in range(5):
        cuts = sorted(rng.sample(range(1, len(text)), rng.randint(1, min(60, len(text) - 1))))
        yield [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]


@pytest.mark.parametrize(
    "text",
    [ANSWER, ANSWER.replace("\n", "\r\n"), "```\nunclosed fence\n\nstill code", "> " * 200 + "q"],
    ids=["answer", "crlf", "unclosed-fence", "quotes"],
)
def test_streamed_pieces_end_in_the_dom_of_one_render(md_page: Any, text: str) -> None:
    for pieces in chunkings(text):
        result = md_page.evaluate(STREAM, pieces)
        assert result["live"] == result["once"], pieces
        # While it streams, the text never shows more than was sent.
        for shown in result["seen"]:
            assert len(shown) <= len(text)


def test_answer_shape_in_the_dom(md_page: Any) -> None:
    shape = md_page.evaluate(
        """(text) => {
            const el = document.getElementById('out');
            md.renderInto(el, text);
            const q = (s) => [...el.querySelectorAll(s)];
            return {
                links: q('a').map((a) => [a.getAttribute('href'), a.target, a.rel]),
                cells: q('td').map((td) => [td.textContent, td.className]),
                code: q('.code-block pre code').map((c) => c.textContent),
                copy: q('.code-block button.copy').map((b) => b.getAttribute('aria-label')),
                lang: q('pre[data-lang]').map((p) => p.dataset.lang),
                html: q('img, script, b, iframe').length,
                headings: q('h1, h2').map((h) => h.textContent),
                text: el.textContent,
            };
        }""",
        ANSWER,
    )
    assert [href for href, _, _ in shape["links"]] == [
        "https://en.wikipedia.org/wiki/Foo_(bar)",
        "https://example.com/a_(b)",
    ]
    assert all(t == "_blank" and r == "noopener noreferrer nofollow" for _, t, r in shape["links"])
    assert shape["cells"] == [
        ["a", ""],
        ["1", "align-right"],
        ["<b>b</b>", ""],
        ["2", "align-right"],
    ]
    assert shape["code"] == [
        "def f(a, b):\n    return a < b  # <script>alert(1)</script>",
        "indented code",
    ]
    assert shape["copy"] == ["Copy code", "Copy code"]
    assert shape["lang"] == ["python"]
    assert shape["html"] == 0
    assert shape["headings"] == ["Title", "Setext heading"]
    assert "<img src=x onerror=alert(1)>" in shape["text"]
    assert "Copy" not in shape["text"]  # the button's label is CSS, not text


def test_copy_button_copies_the_code(md_page: Any, browser: Any) -> None:
    md_page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=ORIGIN)
    md_page.evaluate(
        "(t) => md.renderInto(document.getElementById('out'), t)",
        "```\nline 1\n  <line 2>\n```",
    )
    md_page.click("button.copy")
    md_page.wait_for_selector("button.copy[data-state=copied]", timeout=TIMEOUT)
    assert md_page.evaluate("navigator.clipboard.readText()") == "line 1\n  <line 2>"


@pytest.mark.parametrize(
    ("exec_command", "state", "copied"),
    [("real", "copied", "line 1\n  <line 2>"), ("refused", "failed", "")],
    ids=["fallback-copies", "fallback-refused"],
)
def test_without_the_clipboard_api_the_copy_button_copies_the_selection(
    md_page: Any, exec_command: str, state: str, copied: str
) -> None:
    # A page served over plain http from another machine has no clipboard API
    # (secure contexts only): the button selects the code and copies that, and
    # says so when even that is refused.
    md_page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=ORIGIN)
    md_page.evaluate("navigator.clipboard.writeText('before')")
    md_page.evaluate(
        """([text, refuse]) => {
            const refused = new DOMException("not allowed", "NotAllowedError");
            navigator.clipboard.writeText = () => Promise.reject(refused);
            if (refuse) document.execCommand = () => false;
            md.renderInto(document.getElementById('out'), text);
        }""",
        ["```\nline 1\n  <line 2>\n```", exec_command == "refused"],
    )
    md_page.click("button.copy")
    md_page.wait_for_selector(f"button.copy[data-state={state}]", timeout=TIMEOUT)
    assert md_page.evaluate("navigator.clipboard.readText()") == (copied or "before")
    # The selection made for copying is not left behind.
    assert md_page.evaluate("getSelection().rangeCount") == 0


def test_a_bare_url_is_a_link_that_opens_in_a_new_tab(md_page: Any) -> None:
    url = "https://en.wikipedia.org/wiki/Foo_(bar)"
    # The link is followed to a stand-in, not to the network.
    md_page.context.route(
        "https://en.wikipedia.org/**",
        lambda route: route.fulfill(body="<title>stand-in</title>", content_type="text/html"),
    )
    md_page.evaluate(
        "(t) => md.renderInto(document.getElementById('out'), t)",
        f"See {url}. And <a href=javascript:alert(1)>this</a>.",
    )
    assert md_page.locator("#out a").count() == 1  # the <a> written in the text stays text
    assert "<a href=javascript:alert(1)>" in md_page.locator("#out").text_content()
    with md_page.context.expect_page(timeout=TIMEOUT) as opened:
        md_page.click("#out a")
    tab = opened.value
    tab.wait_for_load_state()
    assert tab.url == url
    # rel=noopener: the new tab cannot reach back to the page that opened it.
    assert tab.evaluate("window.opener") is None
    tab.close()


def test_a_new_text_replaces_the_old(md_page: Any) -> None:
    html = md_page.evaluate(
        """() => {
            const el = document.getElementById('out');
            md.renderInto(el, '# one\\n\\ntwo');
            md.appendTo(el, ' more');
            md.renderInto(el, 'other *text*');
            return el.innerHTML;
        }"""
    )
    assert html == "<p>other <em>text</em></p>"


def test_the_module_is_served_as_javascript(demo_service: ServerProcess) -> None:
    for path in ("/static/markdown.js", "/static/vendor/markdown-it/markdown-it.esm.min.mjs"):
        response = httpx.get(demo_service.url + path)
        assert response.status_code == 200, path
        assert response.headers["content-type"].startswith("text/javascript"), path


# Stream `pieces`, noting the work the renderer did and whether the first block
# stayed the very element it was built as.
STREAM_WORK = """
(pieces) => {
  const live = document.createElement('div');
  document.getElementById('out').replaceChildren(live);
  let first = null;
  let kept = true;
  for (const piece of pieces) {
    md.appendTo(live, piece);
    if (first === null && live.children.length > 1) first = live.firstElementChild;
    if (first !== null && live.firstElementChild !== first) kept = false;
  }
  const streamed = md.workOf(live);
  const text = pieces.join('');
  md.renderInto(live, text);
  return {
    streamed,
    done: md.workOf(live),
    kept,
    budget: md.STREAM_BUDGET,
  };
}
"""


def test_streaming_parses_within_its_budget_and_keeps_finished_blocks(md_page: Any) -> None:
    text = "\n\n".join([ANSWER] * 20)
    pieces = re.findall(r"\s*\S{1,4}|\s+", text)  # some 4,000 pieces of a token or so
    result = md_page.evaluate(STREAM_WORK, pieces)
    streamed, done = result["streamed"], result["done"]
    assert streamed["length"] == done["length"] == len(text)
    # While streaming: within the budget (and its fixed slack for a short start).
    assert streamed["work"] <= result["budget"] * len(text) + 2000
    # Completing it parses only what came since the last render's last block:
    # streaming and completing together parse under twice the text (issue 16's
    # bound, in characters rather than in time).
    assert streamed["work"] < done["work"] <= 2 * len(text)
    # The first block was built once and never rebuilt.
    assert result["kept"]
