"""用户 pages meet segments and communities in headless Chromium: bulk tagging a segment's
members from 标签, a profile's 所属人群 linking to the filtered list, the list filtered by
community, and timeline events named in Chinese. Screenshots in artifacts/."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent))
sys.path.insert(0, str(Path(__file__).parent))

from people_helpers import person

from browser_support import ON_SQLITE_ONLY, chromium, expect, live_server, screenshot


@pytest.fixture
def server(settings: Any, runtime: Any) -> Iterator[str]:
    from liebian.app.factory import create_app

    with live_server(create_app(settings, runtime)) as url:
        yield url


@pytest.mark.browser
@ON_SQLITE_ONLY
def test_segments_and_communities_on_the_people_pages(
    server: str, owner: dict[str, str], runtime: Any
) -> None:
    import httpx

    def call(method: str, path: str, body: Any = None) -> Any:
        r = httpx.request(method, server + path, json=body, headers=owner)
        assert r.status_code < 300, r.text
        return r.json()

    ws = call("GET", "/api/v1/workspace")["id"]
    for ext, name in (("u1", "王小明"), ("u2", "李华"), ("u3", "张三")):
        person(runtime, ws, ext, nickname=name)
    community = call("POST", "/api/v1/communities", {"name": "宝妈福利群"})["id"]
    group = call("POST", f"/api/v1/communities/{community}/groups", {"name": "1群"})["id"]
    for ext in ("u1", "u2"):
        call("POST", f"/api/v1/community-groups/{group}/members", {"external_id": ext})
    runtime.flush_events()
    cond = {"type": "community", "community_id": community, "status": "joined"}
    segment = call("POST", "/api/v1/segments", {"name": "在群宝妈", "condition": cond})
    assert segment["size"] == 2
    call("POST", "/api/v1/tags", {"name": "社群用户", "color": "#188038"})
    key = owner["Authorization"].split(" ", 1)[1]
    with chromium() as browser:
        page = browser.new_context(
            viewport={"width": 1440, "height": 900}, locale="zh-CN"
        ).new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(server + "/admin/login?next=%2Fadmin%2Ftags")
        page.fill("input[name=key]", key)
        page.click("#login-form button[type=submit]")
        page.wait_for_url("**/admin/tags")
        page.wait_for_selector("body[data-people-ready]")
        # 标签: tag every member of the segment
        page.select_option("#bulk-tag", label="社群用户")
        page.select_option("#bulk-segment", value=segment["id"])
        page.click("#bulk-form button[type=submit]")
        page.wait_for_selector("#alert.ok:has-text('2 位用户')")
        # 用户: filter by community
        page.goto(server + "/admin/contacts")
        page.wait_for_selector("body[data-people-ready]")
        page.select_option("#ct-community", label="宝妈福利群")
        page.click("#ct-form button[type=submit]")
        expect(page.locator("#ct-table tbody tr")).to_have_count(2)
        assert "张三" not in page.inner_text("#ct-table")
        assert page.locator("#ct-table .badge.tag", has_text="社群用户").count() == 2
        screenshot(page, "people-contacts-by-community")
        # 用户详情: 所属人群 and a Chinese timeline; the segment link lists its members
        page.click("#ct-table a:has-text('u1')")
        page.wait_for_selector("#cd-timeline li")
        assert "在群宝妈" in page.inner_text("#cd-segments")
        timeline = page.inner_text("#cd-timeline")
        assert "入群" in timeline and "group_joined" not in timeline
        screenshot(page, "people-contact-segments")
        page.click("#cd-segments a:has-text('在群宝妈')")
        page.wait_for_url("**/admin/contacts?segment=*")
        expect(page.locator("#ct-table tbody tr")).to_have_count(2)
        assert page.input_value("#ct-segment") == segment["id"]
    assert errors == []
