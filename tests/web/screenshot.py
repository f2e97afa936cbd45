"""Take docs/screenshot.png: the chat page mid-answer at laptop width.

    .venv/bin/python tests/web/screenshot.py [docs/screenshot.png]

It runs the real service in front of askstream's fake OpenAI-compatible
upstream (so the answer has some Markdown to show), fills the chat list, asks
a question in Debian's Chromium and shoots while the answer streams.

Reproducible: on one machine, every run writes the same bytes. What would vary
is held still. The answer stops at a fixed piece (the upstream's ``stall`` mode
goes quiet there for two minutes) and the shot waits until the page holds
exactly that text, then renders it whole, as the page's next render would
(while it streams, the page may show the newest pieces as plain text first).
Chat times show only on hover, the label's pulse and the input's caret are
still in a screenshot (Playwright's ``animations="disabled"``, ``caret="hide"``),
and the earlier chats are made, answered in full, before the page opens.
"""

from __future__ import annotations

import hashlib
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import sync_playwright

from askstream.testing import ServerProcess

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--font-render-hinting=none",
]
ANSWER = """\
Server-Sent Events keep **one HTTP response open** and write each piece of the \
answer as an event the moment the model produces it:

1. The browser sends the question with `fetch` and a JSON body.
2. The server answers `text/event-stream` and writes `data:` lines as tokens arrive.
3. Every event has an `id`, so a dropped connection *resumes* with `Last-Event-ID`.

| | SSE | WebSocket |
|---|---|---|
| Direction | server → browser | both ways |
| Resume after a drop | built in (`Last-Event-ID`) | yours to write |
| Through proxies | plain HTTP | an upgrade |

```js
import { stream } from "/static/askstream.js";

for await (const event of stream("/api/ask", { method: "POST", body })) {
  answer.textContent += JSON.parse(event.data).delta ?? "";
}
```

Reload the page in the middle of this answer: it picks up where it was.
"""
# The shot is taken with the answer up to here: the code block begun, not ended.
STOP_AFTER = 'method: "POST"'
EARLIER = [
    "Plan a three-day trip to Kyoto",
    "Explain Python's asyncio TaskGroup",
    "What is a good name for a cat?",
]
QUESTION = "How does streaming an answer over SSE work?"
# How the fake upstream cuts an answer into pieces (askstream.testing's FakeUpstream).
PIECE = re.compile(r"\s*\S{1,4}|\s+")


def shown_prefix() -> tuple[int, str]:
    """How many of the answer's pieces the shot shows, and their text."""
    pieces = PIECE.findall(ANSWER)
    text = ""
    for count, piece in enumerate(pieces, 1):
        text += piece
        if STOP_AFTER in text:
            return count, text
    raise ValueError(f"{STOP_AFTER!r} is not in the answer")


def main(out: Path) -> None:
    count, prefix = shown_prefix()
    with tempfile.TemporaryDirectory() as data:
        upstream = ServerProcess(
            "askstream.testing:FakeUpstream.from_env",
            factory=True,
            env={
                "ASKSTREAM_FAKE_ANSWER": ANSWER,
                "ASKSTREAM_FAKE_DELAY": "0.005",
                # The model "fake-stall" goes quiet after `count` pieces.
                "ASKSTREAM_FAKE_FAIL_AFTER": str(count),
                "ASKSTREAM_FAKE_SLOW_DELAY": "120",
            },
        )
        with upstream:
            env = {
                "ASKSTREAM_DATA_DIR": data,
                "ASKSTREAM_LLM_URL": f"{upstream.url}/v1",
                "ASKSTREAM_LOG_LEVEL": "warning",
            }
            # The earlier chats, answered in full. One client, so one session,
            # whose cookie then goes to the browser: it sees them as its own.
            service = ServerProcess(
                "askstream.service:create_app",
                factory=True,
                env={**env, "ASKSTREAM_LLM_MODEL": "fake"},
            )
            with service, httpx.Client(base_url=service.url, timeout=30) as client:
                for question in EARLIER:
                    client.post(
                        "/api/ask", json={"chatId": None, "question": question}
                    ).raise_for_status()
                    time.sleep(0.05)  # distinct times, so the list order is stable
                cookies = [
                    {"name": cookie.name, "value": cookie.value or "", "url": ""}
                    for cookie in client.cookies.jar
                ]
            # The same data (and session key) behind a model that stalls mid-answer.
            service = ServerProcess(
                "askstream.service:create_app",
                factory=True,
                env={**env, "ASKSTREAM_LLM_MODEL": "fake-stall"},
            )
            with service:
                for cookie in cookies:
                    cookie["url"] = service.url
                shoot(service.url, out, cookies, prefix)
            # The upstream's stalled answer sleeps on though nobody reads it: no
            # need to wait for it to end.
            upstream.stop(timeout=1)


# Resolves once the open answer has been handed exactly `prefix`'s length of
# text, then renders that text whole into it, as its next render would.
SETTLE = """
async ([length, prefix]) => {
  const md = await import("/static/markdown.js"); // the page's own module instance
  const content = document.querySelector(".message.assistant .content");
  if (md.workOf(content).length !== length) return false;
  md.renderInto(content, prefix);
  await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
  return true;
}
"""


def shoot(url: str, out: Path, cookies: list[Any], prefix: str) -> None:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS
        )
        try:
            context = browser.new_context(
                viewport={"width": 1280, "height": 800},
                device_scale_factor=1,
                color_scheme="light",
                reduced_motion="reduce",
            )
            context.add_cookies(cookies)
            page = context.new_page()
            page.goto(url)
            page.wait_for_selector("html[data-ready]")
            page.fill("#question", QUESTION)
            page.press("#question", "Enter")
            page.wait_for_selector(".message.assistant .content", timeout=30_000)
            deadline = time.monotonic() + 30
            while not page.evaluate(SETTLE, [len(prefix), prefix]):
                if time.monotonic() > deadline:
                    sys.exit("screenshot: the answer never reached its stopping point")
                page.wait_for_timeout(50)
            assert page.locator(".message.assistant[data-status=streaming]").count() == 1
            assert page.locator(".chat-link").count() == len(EARLIER) + 1
            page.screenshot(path=str(out), animations="disabled", caret="hide")
            # Stopped, the stalled answer ends now rather than hold the service's
            # shutdown for its two minutes.
            page.click("#stop")
            page.wait_for_selector(".message.assistant[data-status=cancelled]", timeout=30_000)
        finally:
            browser.close()


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/screenshot.png")
    main(target)
    print(f"wrote {target} (sha256 {hashlib.sha256(target.read_bytes()).hexdigest()[:16]})")
