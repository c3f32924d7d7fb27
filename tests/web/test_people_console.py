"""用户 and 标签 console pages in headless Chromium, screenshots at 1440 px in artifacts/."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent))
sys.path.insert(0, str(Path(__file__).parent.parent / "contacts"))

from people_helpers import person

from browser_support import ON_SQLITE_ONLY, chromium, expect, live_server, screenshot
from liebian.events.store import EventRow


def test_people_pages_answer_in_chinese(client: Any) -> None:
    for path, heading in (
        ("/admin/contacts", "用户"),
        ("/admin/tags", "标签"),
        ("/admin/contacts/u1", "时间线"),
    ):
        r = client.get(path)
        assert r.status_code == 200 and heading in r.text
    js = client.get("/admin/static/people.js")
    assert js.status_code == 200 and ".innerHTML" not in js.text


@pytest.fixture
def server(settings: Any, runtime: Any) -> Iterator[str]:
    from liebian.app.factory import create_app

    with live_server(create_app(settings, runtime)) as url:
        yield url


@pytest.mark.browser
@ON_SQLITE_ONLY
def test_people_console_in_chromium(
    server: str, owner: dict[str, str], runtime: Any, db_url: str
) -> None:
    import httpx

    backend = "pg" if db_url.startswith("postgresql") else "sqlite"
    ws = httpx.get(server + "/api/v1/workspace", headers=owner).json()["id"]
    person(runtime, ws, "u1001", phone="13812345678", nickname="王小明")
    person(runtime, ws, "u1002", nickname="李华")
    person(runtime, ws, "u1003", nickname="<img src=x onerror=alert(1)>")
    t0 = datetime.now(UTC) - timedelta(days=2)
    runtime.event_store.insert(
        [EventRow(ws, f"e{i}", ("page_view", "click", "purchase")[i % 3], t0 + timedelta(hours=i),
                  user_id="u1001", channel="wechat_group", revenue=9900 if i % 3 == 2 else None)
         for i in range(6)]
    )  # fmt: skip
    key = owner["Authorization"].split(" ", 1)[1]
    with chromium() as browser:
        context = browser.new_context(viewport={"width": 1440, "height": 900}, locale="zh-CN")
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("dialog", lambda d: d.accept())
        page.goto(server + "/admin/login?next=%2Fadmin%2Ftags")
        page.fill("input[name=key]", key)
        page.click("#login-form button[type=submit]")
        page.wait_for_url("**/admin/tags")
        page.wait_for_selector("body[data-people-ready]")
        # 标签: a group, a tag, bulk tagging by external ids
        page.fill("#tgg-form input[name=name]", "生命周期")
        page.click("#tgg-form button")
        page.wait_for_selector("#tg-group option:has-text('生命周期')", state="attached")
        page.fill("#tg-form input[name=name]", "高意向")
        page.select_option("#tg-group", label="生命周期")
        page.click("#tg-form button[type=submit]")
        page.wait_for_selector("#tg-table td:has-text('高意向')")
        page.fill("#bulk-form textarea[name=ids]", "u1001\nu1002")
        page.click("#bulk-form button[type=submit]")
        page.wait_for_selector("#alert.ok:has-text('2 位用户')")
        page.wait_for_selector("#tg-table a:has-text('2')")
        screenshot(page, f"people-tags-{backend}")
        # 用户: list, search by nickname prefix
        page.goto(server + "/admin/contacts")
        page.wait_for_selector("body[data-people-ready]")
        assert page.locator("#ct-table tbody tr").count() == 3
        assert "<img" in page.inner_text("#ct-table")  # hostile nickname shown as text
        page.fill("#ct-form input[name=q]", "王小")
        page.click("#ct-form button[type=submit]")
        expect(page.locator("#ct-table tbody tr")).to_have_count(1)
        assert "13812345678" in page.inner_text("#ct-table")  # owner may see PII
        screenshot(page, f"people-contacts-{backend}")
        # 用户详情: profile + timeline
        page.click("#ct-table a:has-text('u1001')")
        page.wait_for_selector("#cd-timeline li")
        assert page.locator("#cd-timeline li").count() == 7  # 6 events + the tag change
        assert "高意向" in page.inner_text("#cd-tags")
        assert "¥198.00" in page.inner_text("#cd-computed") or "订单数" in page.inner_text(
            "#cd-computed"
        )
        screenshot(page, f"people-contact-{backend}")
    assert errors == []
