"""The page's Content-Security-Policy in a real Chromium: script that reaches the
page's HTML (a stored XSS, a proxy that rewrites it) never runs.

Each test serves the real page with a script and an inline handler injected into
its HTML, once as the service sends it (the page's ``<meta>`` policy and the
service's header) and once without the ``<meta>``, so the service's
``Content-Security-Policy`` header alone must hold (issue 11's server side).
The page's own scripts still run: the policy allows ``'self'``.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from askstream.testing import ServerProcess

from .conftest import Tab
from .test_page import TIMEOUT

INJECTED = (
    "<script>window.__injected = 'script'</script>"
    "<img src='data:,' onerror=\"window.__injected = 'handler'\">"
)
# Installed before any of the page's own script, and outside the policy's reach.
WATCH_VIOLATIONS = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__violations.push(event.effectiveDirective);
});
"""
META_POLICY = re.compile(r"<meta http-equiv=\"Content-Security-Policy\"[^>]*>", re.IGNORECASE)


@pytest.mark.parametrize("policy", ["as-served", "header-alone"])
def test_an_injected_inline_script_never_runs(
    browser: Any, demo_service: ServerProcess, policy: str
) -> None:
    tab = Tab(browser)
    headers: dict[str, str] = {}

    def inject(route: Any) -> None:
        response = route.fetch()
        headers.update(response.headers)
        html = response.text()
        if policy == "header-alone":
            html, removed = META_POLICY.subn("", html)
            assert removed == 1
        assert "<body>" in html
        route.fulfill(response=response, body=html.replace("<body>", "<body>" + INJECTED, 1))

    try:
        page = tab.page
        page.add_init_script(WATCH_VIOLATIONS)
        page.route(f"{demo_service.url}/", inject)
        page.goto(demo_service.url)
        page.wait_for_selector("html[data-ready]", timeout=TIMEOUT)  # app.js ran
        # By now the parser has run the script, and the broken image fired its handler.
        assert page.evaluate("window.__injected") is None
        page.wait_for_function("() => window.__violations.length >= 2", timeout=TIMEOUT)
        # Each policy in force (the <meta> and the header) reports its own.
        assert set(page.evaluate("window.__violations")) == {"script-src-attr", "script-src-elem"}
        if policy == "header-alone":
            policy_header = headers.get("content-security-policy", "")
            assert "script-src 'self'" in policy_header
            assert "frame-ancestors 'none'" in policy_header
    finally:
        tab.close()
