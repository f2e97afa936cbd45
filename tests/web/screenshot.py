"""Take docs/screenshot.png: the chat page mid-answer at laptop width.

    .venv/bin/python tests/web/screenshot.py [docs/screenshot.png]

It runs the real service in front of askstream's fake OpenAI-compatible
upstream (so the answer has some Markdown to show), fills the chat list, asks
a question in Debian's Chromium and shoots while the answer streams.
"""

from __future__ import annotations

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
]
ANSWER = """\
Server-Sent Events keep **one HTTP response open** and write each piece of the \
answer as an event the moment the model produces it:

1. The browser sends the question with `fetch` and a JSON body.
2. The server answers `text/event-stream` and writes `data:` lines as tokens arrive.
3. Every event has an `id`, so a dropped connection *resumes* with `Last-Event-ID`.

```js
import { stream } from "/static/askstream.js";

for await (const event of stream("/api/ask", { method: "POST", body })) {
  answer.textContent += JSON.parse(event.data).delta ?? "";
}
```

Reload the page in the middle of this answer: it picks up where it was.
"""
EARLIER = [
    "Plan a three-day trip to Kyoto",
    "Explain Python's asyncio TaskGroup",
    "What is a good name for a cat?",
]
QUESTION = "How does streaming an answer over SSE work?"


def main(out: Path) -> None:
    with tempfile.TemporaryDirectory() as data:
        upstream = ServerProcess(
            "askstream.testing:FakeUpstream.from_env",
            factory=True,
            env={"ASKSTREAM_FAKE_ANSWER": ANSWER, "ASKSTREAM_FAKE_DELAY": "0.03"},
        )
        with upstream:
            service = ServerProcess(
                "askstream.service:create_app",
                factory=True,
                env={
                    "ASKSTREAM_DATA_DIR": data,
                    "ASKSTREAM_LLM_URL": f"{upstream.url}/v1",
                    "ASKSTREAM_LLM_MODEL": "fake",
                    "ASKSTREAM_LOG_LEVEL": "warning",
                },
            )
            # One client, so one session: its cookie then goes to the browser,
            # which sees these chats as its own.
            with service, httpx.Client(base_url=service.url, timeout=30) as client:
                for question in EARLIER:
                    client.post(
                        "/api/ask", json={"chatId": None, "question": question}
                    ).raise_for_status()
                    time.sleep(0.05)  # distinct times, so the list order is stable
                cookies = [
                    {"name": cookie.name, "value": cookie.value or "", "url": service.url}
                    for cookie in client.cookies.jar
                ]
                shoot(service.url, out, cookies)


def shoot(url: str, out: Path, cookies: list[Any]) -> None:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS
        )
        try:
            context = browser.new_context(
                viewport={"width": 1280, "height": 800}, device_scale_factor=1
            )
            context.add_cookies(cookies)
            page = context.new_page()
            page.goto(url)
            page.wait_for_selector("html[data-ready]")
            page.fill("#question", QUESTION)
            page.press("#question", "Enter")
            # Mid-answer: the code block has begun, the answer has not ended.
            page.wait_for_function(
                "() => document.querySelector('.message.assistant pre code')"
                "?.textContent.includes('for await')",
                timeout=30_000,
            )
            assert page.locator(".message.assistant[data-status=streaming]").count() == 1
            page.screenshot(path=str(out))
        finally:
            browser.close()


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/screenshot.png")
    main(target)
    print(f"wrote {target}")
