"""/docs renders the API reference from the package's own Swagger UI files, with no request
leaving loopback and nothing refused by its Content-Security-Policy (issue 10 §4)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from browser_support import ARTIFACTS, chromium, expect, live_server

pytestmark = pytest.mark.browser


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # pages, not storage
def test_docs_render_offline_under_their_csp(settings: Any, runtime: Any) -> None:
    from liebian.app.factory import create_app

    with live_server(create_app(settings, runtime)) as url:
        page_resp = httpx.get(f"{url}/docs")
        csp = page_resp.headers["content-security-policy"]
        assert "unsafe-inline" not in csp and "script-src 'self' 'sha256-" in csp
        assert "cdn" not in page_resp.text.lower()
        assert httpx.get(f"{url}/redoc").status_code == 404  # off: one reference
        assert httpx.get(f"{url}/docs/static/LICENSE").text.lstrip().startswith("Apache License")
        assert httpx.get(f"{url}/docs/static/..%2Fconsole.js").status_code == 404
        outside: list[str] = []
        problems: list[str] = []
        with chromium() as browser:
            page = browser.new_page()

            def only_loopback(route: Any) -> None:
                request_url = route.request.url
                if request_url.startswith("data:") or urlsplit(request_url).hostname in (
                    "127.0.0.1",
                    "localhost",
                ):
                    route.continue_()
                else:
                    outside.append(route.request.url)
                    route.abort()

            page.route("**/*", only_loopback)
            page.on("console", lambda m: m.type == "error" and problems.append(m.text))
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.goto(f"{url}/docs")
            # the spec loaded and its operations are drawn (the tags in view first)
            expect(page.locator(".opblock-summary-path").nth(9)).to_be_attached(timeout=60_000)
            paths = page.locator(".opblock-summary-path").all_inner_texts()
            assert "/api/v1/links/bulk" in {p.replace("\u200b", "") for p in paths}
            page.locator(".opblock-summary", has_text="/api/v1/links/bulk").first.click()
            page.wait_for_selector(".opblock-body .opblock-section-request-body")
            assert page.locator(".info .title").inner_text().startswith("liebian API")
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "api-docs.png"))  # the viewport: the page is long
    assert outside == []
    assert problems == []  # no CSP violation, no script error
