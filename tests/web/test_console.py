"""Operator console (/admin): shells answer in Chinese, assets are served, and the whole
sign-in → create link → list → detail + QR path works in headless Chromium."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from browser_support import ON_SQLITE_ONLY, chromium, live_server, screenshot

PAGES = [
    ("/admin/login", "粘贴工作区的 API 密钥"),
    ("/admin", "今日点击"),
    ("/admin/links", "新建短链"),
    ("/admin/links/lnk_01JAAAAAAAAAAAAAAAAAAAAAAA", "短链详情"),
    ("/admin/live-codes", "新建活码"),
    ("/admin/domains", "添加域名"),
    ("/admin/analytics", "转化漏斗"),
    ("/admin/campaigns", "从模板创建"),
    ("/admin/review", "风控审核"),
    ("/admin/rewards", "新建打款批次"),
    ("/admin/webhooks", "新建 Webhook"),
]
BROWSER_UA = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0 Safari/537.36"
)


@pytest.mark.parametrize(("path", "expect"), PAGES)
def test_pages_answer_in_chinese(client: Any, path: str, expect: str) -> None:
    resp = client.get(path)
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in resp.headers["content-security-policy"]
    assert resp.headers["cache-control"] == "no-store"
    html = resp.text
    assert expect in html and '<html lang="zh-CN">' in html
    if path != "/admin/login":
        for item in ("概览", "短链", "活码", "域名", "数据", "活动", "风控审核", "奖励", "Webhook"):
            assert f">{item}</a>" in html
    # No external resources: the console must work with no network beyond the server.
    assert "http://" not in html and "https://cdn" not in html


def test_link_id_in_path_is_escaped(client: Any) -> None:
    html = client.get("/admin/links/%22%3E%3Cscript%3Ealert(1)").text
    assert "<script>alert" not in html and "&lt;script&gt;" in html


def test_assets_and_redirects(client: Any) -> None:
    css = client.get("/admin/static/console.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert '"Noto Sans CJK SC"' in css.text
    js = client.get("/admin/static/console.js")
    assert js.status_code == 200 and "javascript" in js.headers["content-type"]
    assert ".innerHTML" not in js.text and "insertAdjacentHTML" not in js.text  # text only
    assert client.get("/admin/static/secret.key").status_code == 404
    assert client.get("/admin/static/..%2F..%2Fconsole.py").status_code == 404
    slash = client.get("/admin/")
    assert slash.status_code == 308 and slash.headers["location"] == "/admin"


# --- headless Chromium ---------------------------------------------------------------------


@pytest.fixture
def server(settings: Any, runtime: Any) -> Iterator[str]:
    from liebian.app.factory import create_app

    with live_server(create_app(settings, runtime)) as url:
        yield url


def _wait_for_clicks(client: Any, owner: dict[str, str], link_id: str, want: int) -> None:
    """The flusher moves clicks into the event store in the background; poll until it has."""
    for _ in range(200):
        stats = client.get(f"/api/v1/links/{link_id}/stats", headers=owner).json()
        if stats["clicks"] >= want:
            return
        time.sleep(0.05)
    raise AssertionError(f"clicks never reached {want}: {stats}")


def _wait_for_image(page: Any, selector: str) -> None:
    """Until the image has decoded pixels. (Polled from Python: the console's CSP forbids
    the string eval that page.wait_for_function would use.)"""
    image = page.locator(selector)
    image.wait_for()
    for _ in range(200):
        if image.evaluate("img => img.complete && img.naturalWidth") > 0:
            return
        time.sleep(0.05)
    raise AssertionError(f"{selector} never loaded")


@pytest.mark.browser
@ON_SQLITE_ONLY
def test_console_in_headless_chromium(server: str, owner: dict[str, str], db_url: str) -> None:
    import httpx

    # Known race (reported): app/deps.get_session commits after the reply is sent (FastAPI's
    # default yield scope "request"), so a list re-read right after a write can miss it.
    backend = "pg" if db_url.startswith("postgresql") else "sqlite"
    key = owner["Authorization"].split(" ", 1)[1]
    api_log: list[str] = []  # shown when the test fails: which call answered what
    try:
        with chromium() as browser:
            context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN")
            page = context.new_page()
            page_errors: list[str] = []
            page.on("pageerror", lambda e: page_errors.append(str(e)))
            page.on("dialog", lambda d: d.accept())
            page.on("response", lambda r: api_log.append(f"{r.request.method} {r.url} {r.status}"))
            page.on(
                "requestfailed", lambda r: api_log.append(f"FAILED {r.method} {r.url} {r.failure}")
            )

            # Signed out: any console page sends us to sign-in and back.
            page.goto(server + "/admin/links")
            page.wait_for_url("**/admin/login?next=%2Fadmin%2Flinks")
            page.fill("input[name=key]", "lb_wrong")
            page.click("#login-form button[type=submit]")
            page.wait_for_selector("#alert.error")
            assert "密钥无效" in page.inner_text("#alert")
            screenshot(page, f"console-login-error-{backend}")
            page.fill("input[name=key]", key)
            page.click("#login-form button[type=submit]")
            page.wait_for_url("**/admin/links")
            page.wait_for_selector("body[data-ready]")
            assert page.is_visible("#links-empty")

            # Create a link through the form; the title is hostile markup and must stay text.
            page.click("#create-box summary")
            page.fill("input[name=url]", "https://example.com/course?id=1")
            page.fill("input[name=slug]", "summer24")
            page.fill("input[name=title]", "暑期班试听 <img src=x onerror=alert(1)>")
            page.fill("input[name=channel]", "wx_group_01")
            page.fill("input[name=tags]", "暑期，试听")
            page.fill("input[name=utm_source]", "wechat")
            page.check("input[name=browser_guide]")
            page.click("#link-form button[type=submit]")
            page.wait_for_selector("#alert.ok")
            assert "summer24" in page.inner_text("#alert")
            row = page.locator("#links-table tbody tr").first
            row.wait_for()
            assert "暑期班试听 <img src=x onerror=alert(1)>" in row.inner_text()
            assert "暑期" in row.inner_text() and "wx_group_01" in row.inner_text()
            assert page.locator("#links-table img").count() == 0

            # Filters: a channel that matches nothing empties the list.
            page.fill("#filter-form input[name=channel]", "nope")
            page.click("#filter-form button[type=submit]")
            page.wait_for_selector("#links-empty:not([hidden])")
            page.fill("#filter-form input[name=channel]", "wx_group_01")
            page.click("#filter-form button[type=submit]")
            page.wait_for_selector("#links-table tbody tr")

            # CSV import with a bad row: nothing created, the row's problem is shown.
            page.click("details:has(#csv-form) summary")
            page.set_input_files(
                "#csv-form input[name=file]",
                files=[{"name": "links.csv", "mimeType": "text/csv",
                        "buffer": b"url,slug\nhttps://ok.example/a,ok1\nftp://bad.example,bad1\n"}],
            )  # fmt: skip
            page.click("#csv-form button[type=submit]")
            page.wait_for_selector("#csv-result table")
            assert "第 2 行" in page.inner_text("#alert")
            page.set_viewport_size({"width": 390, "height": 844})
            assert page.evaluate("document.documentElement.scrollWidth") <= 390
            screenshot(page, f"console-links-mobile-{backend}")
            page.set_viewport_size({"width": 1280, "height": 900})
            screenshot(page, f"console-links-{backend}")

            # A real click through the redirect, so the detail page has numbers to show.
            link_id = row.get_attribute("data-id")
            assert link_id
            httpx.get(server + "/summer24", headers={"user-agent": BROWSER_UA})
            with httpx.Client(base_url=server) as api:
                _wait_for_clicks(api, owner, link_id, 1)

            row.locator("a", has_text="详情").click()
            page.wait_for_url(f"**/admin/links/{link_id}")
            page.wait_for_selector("body[data-ready]")
            _wait_for_image(page, "#ld-qr")
            assert page.inner_text("#st-clicks") == "1"
            assert "普通浏览器" in page.inner_text("#st-platform")
            assert "utm_source=wechat" in page.inner_text("#ld-fields")
            screenshot(page, f"console-link-detail-{backend}")

            # The other sections load and act without errors.
            page.goto(server + "/admin/live-codes")
            page.wait_for_selector("body[data-ready]")
            page.click("#lc-create-box summary")
            page.fill("#lc-form input[name=name]", "暑期班家长群")
            page.fill("#lc-targets input[name=label]", "1群")
            page.fill("#lc-targets input[name=url]", "https://example.com/group1")
            page.click("#lc-form button[type=submit]")
            page.wait_for_selector(".lc-card")
            assert "可用" in page.inner_text(".lc-card")
            page.click(".lc-card button:has-text('二维码')")
            _wait_for_image(page, ".lc-card .qr img")
            screenshot(page, f"console-live-codes-{backend}")

            page.goto(server + "/admin/domains")
            page.wait_for_selector("body[data-ready]")
            page.fill("#domain-form input[name=host]", "s.example.com")
            page.click("#domain-form button[type=submit]")
            page.wait_for_selector("#domains-table tbody tr")
            page.click("#domains-table button:has-text('封禁')")
            page.fill("#domains-table input[name=reason]", "微信内提示停止访问")
            page.click("#domains-table button:has-text('确认封禁')")
            page.wait_for_selector("#domains-table .badge.bad")
            screenshot(page, f"console-domains-{backend}")

            page.goto(server + "/admin/analytics")
            page.wait_for_selector("body[data-ready]")
            # The default steps name events this workspace never sent: a clear error, in Chinese;
            page.click("#funnel-form button[type=submit]")
            page.wait_for_selector("#alert.error")
            # page_view is one liebian writes itself (its campaign pages), known before the first.
            assert "还没有数据：signup、purchase" in page.inner_text("#alert")
            page.fill("#funnel-form textarea[name=steps]", "click, click")
            page.click("#funnel-form button[type=submit]")
            page.wait_for_selector("#funnel-table:not([hidden])")
            page.fill("#retention-form input[name=start_event]", "click")
            page.fill("#retention-form input[name=return_event]", "click")
            page.click("#retention-form button[type=submit]")
            page.wait_for_selector("#retention-table:not([hidden])")
            screenshot(page, f"console-analytics-{backend}")

            page.goto(server + "/admin/campaigns")
            page.wait_for_selector("body[data-ready]")
            screenshot(page, f"console-campaigns-{backend}")
            # A template makes a draft and opens its page (next step: rewards, copy, launch).
            page.locator(".tpl form button").first.click()
            page.wait_for_url("**/admin/campaigns/cmp_*")
            page.wait_for_selector("body[data-ready]")
            assert "草稿" in page.inner_text("#cd-status")

            page.goto(server + "/admin")
            page.wait_for_selector("body[data-ready]")
            page.wait_for_selector("#ov-clicks:not(:text('…'))")
            assert page.inner_text("#ov-links") == "1" and page.inner_text("#ov-live") == "1"
            assert page.inner_text("#ov-ws") == "测试工作区"
            screenshot(page, f"console-overview-{backend}")

            # Delete from the detail page (the confirm dialog is accepted above).
            page.goto(f"{server}/admin/links/{link_id}")
            page.wait_for_selector("body[data-ready]")
            page.click("#ld-delete")
            page.wait_for_url("**/admin/links")
            page.wait_for_selector("#links-empty:not([hidden])")
            assert page_errors == []
    finally:
        print("\n".join(api_log))
