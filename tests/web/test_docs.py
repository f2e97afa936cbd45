"""``GET /docs``: Swagger UI from the package, pinned, under the page's policy.

The vendored files are checked against the sums their README.txt records, and
the page is loaded in a real Chromium: it shows the API, fetches nothing from
another origin and breaks no rule of the Content-Security-Policy.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

import askstream
from askstream.testing import ServerProcess

from .conftest import Tab
from .test_page import TIMEOUT

VENDOR = Path(askstream.__file__).parent / "web" / "vendor" / "swagger-ui"
WATCH_VIOLATIONS = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__violations.push(`${event.effectiveDirective} ${event.blockedURI}`);
});
"""


def test_the_vendored_files_are_the_ones_the_readme_names() -> None:
    readme = (VENDOR / "README.txt").read_text()
    sums = {name: digest for digest, name in re.findall(r"^([0-9a-f]{64})  (\S+)$", readme, re.M)}
    files = {path.name for path in VENDOR.iterdir()} - {"README.txt"}
    assert set(sums) == files
    for name, digest in sums.items():
        assert hashlib.sha256((VENDOR / name).read_bytes()).hexdigest() == digest, name
    [version] = set(re.findall(r"swagger-ui-dist@([0-9.]+)", readme))
    assert f"swagger-ui-dist {version} (npm)" in readme
    assert "Apache License" in (VENDOR / "LICENSE").read_text()


def test_docs_are_off_by_default(demo_service: ServerProcess) -> None:
    response = httpx.get(f"{demo_service.url}/docs")
    assert response.status_code == 404
    assert response.json()["code"] == 404
    assert httpx.get(f"{demo_service.url}/openapi.json").status_code == 200


def test_docs_show_the_api_from_this_origin_alone(
    browser: Any, docs_service: ServerProcess
) -> None:
    tab = Tab(browser)
    try:
        page = tab.page
        page.add_init_script(WATCH_VIOLATIONS)
        response = page.goto(f"{docs_service.url}/docs")
        assert response.status == 200
        page.wait_for_selector(".opblock", timeout=TIMEOUT)
        paths = page.locator(".opblock-summary-path").all_text_contents()
        assert "/api/ask" in paths
        assert "/api/chats" in paths
        assert page.evaluate("window.__violations") == []
        assert tab.errors == []
        origin = urlsplit(docs_service.url)
        for url in tab.requests:
            parts = urlsplit(url)
            assert (parts.hostname, parts.port) == (origin.hostname, origin.port), url
        assert f"{docs_service.url}/static/vendor/swagger-ui/swagger-ui-bundle.js" in tab.requests
        assert f"{docs_service.url}/openapi.json" in tab.requests
    finally:
        tab.close()
