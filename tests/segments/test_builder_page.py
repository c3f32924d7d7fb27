"""The 人群 builder in headless Chromium: compose by clicking, preview, save, see the trend."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from browser_support import ON_SQLITE_ONLY, chromium, expect, live_server, screenshot
from liebian.app.runtime import Runtime

from .helpers import contacts, events, key, tag, workspace


@pytest.fixture
def server(settings: Any, runtime: Runtime) -> Iterator[str]:
    from liebian.app.factory import create_app

    with live_server(create_app(settings, runtime)) as url:
        yield url


@pytest.mark.browser
@ON_SQLITE_ONLY
def test_segment_builder_by_clicking(server: str, runtime: Runtime) -> None:
    ws, _headers = workspace(runtime)
    ids = contacts(runtime, ws, ["妈妈A", "妈妈B", "爸爸C"])
    tag(runtime, ws, "宝妈", [ids["妈妈A"], ids["妈妈B"]])
    events(
        runtime,
        ws,
        ("妈妈A", "purchase", 5),
        ("妈妈A", "purchase", 50),
        ("妈妈B", "purchase", 2),
        ("爸爸C", "purchase", 1),
        ("爸爸C", "purchase", 3),
    )
    operator = key(runtime, ws, "operator")
    plaintext = operator["Authorization"].split(" ", 1)[1]
    import httpx

    # a community with two tiers; 妈妈B joins the 0-1岁 group
    r = httpx.post(
        server + "/api/v1/communities",
        json={
            "name": "宝妈福利群",
            "tiers": [{"key": "baby", "name": "0-1岁"}, {"key": "kid", "name": "3-6岁"}],
        },
        headers=operator,
    )
    assert r.status_code == 201, r.text
    community = r.json()["id"]
    group = httpx.post(
        server + f"/api/v1/communities/{community}/groups",
        json={"name": "0-1岁 1群", "tier": "baby"},
        headers=operator,
    ).json()["id"]
    r = httpx.post(
        server + f"/api/v1/community-groups/{group}/members",
        json={"external_id": "妈妈B"},
        headers=operator,
    )
    assert r.status_code == 200, r.text
    with chromium() as browser:
        context = browser.new_context(viewport={"width": 1440, "height": 900}, locale="zh-CN")
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(server + "/admin/segments")
        page.wait_for_url("**/admin/login?next=%2Fadmin%2Fsegments")
        page.fill("input[name=key]", plaintext)
        page.click("#login-form button[type=submit]")
        page.wait_for_url("**/admin/segments")
        page.wait_for_selector("body[data-segments-ready]")
        assert page.is_visible("#seg-empty")

        page.fill("#seg-name", "近30天复购的宝妈")
        # first condition: has the tag 宝妈
        page.select_option(".seg-cond >> nth=0 >> select.seg-kind", "tags")
        page.get_by_label("宝妈").check()
        # second: purchased at least 2 times in the last 30 days
        page.click("text=＋ 添加条件 >> nth=0")
        second = page.locator(".seg-cond").nth(1)
        second.locator("select.seg-kind").select_option("event")
        second.get_by_label("事件").fill("purchase")
        second.get_by_label("做过或没做过").select_option("count")
        second = page.locator(".seg-cond").nth(1)
        second.get_by_label("次数或金额").fill("2")
        page.click("#seg-preview")
        page.wait_for_selector("#seg-preview-box:not([hidden])")
        assert page.inner_text("#seg-count") == "1"
        assert page.inner_text("#seg-sample") == "妈妈A"

        page.click("#seg-save")
        page.wait_for_selector("#alert.ok")
        assert "近30天复购的宝妈" in page.inner_text("#alert")
        page.wait_for_selector("#seg-list tr.seg-row")
        assert "近30天复购的宝妈" in page.inner_text("#seg-list")
        page.wait_for_selector("#seg-trend polyline", state="attached")
        assert "妈妈A 进入（created）" in page.inner_text("#seg-history")

        # freeze a static copy; save the same condition as a rule tag
        page.click("#seg-freeze")
        page.wait_for_selector("#alert.ok:has-text('已冻结为静态名单')")
        page.wait_for_selector("#seg-list tr.seg-row:has-text('静态名单')")
        page.fill("#seg-name", "复购宝妈标签")
        page.click("#seg-rule-tag")
        page.wait_for_selector("#alert.ok:has-text('已创建规则标签「复购宝妈标签」：现有 1 人')")
        tags = httpx.get(server + "/api/v1/tags", headers=operator).json()["items"]
        rule = next(t for t in tags if t["name"] == "复购宝妈标签")
        assert rule["kind"] == "rule" and rule["contacts_count"] == 1
        page.fill("#seg-name", "近30天复购的宝妈")

        # a bad edit is explained, not saved: an empty event name
        second.get_by_label("事件").fill("")
        page.click("#seg-save")
        page.wait_for_selector("#alert.error")
        assert "$.conditions[1].event" in page.inner_text("#alert")
        second.get_by_label("事件").fill("purchase")
        page.click("#seg-preview")
        page.wait_for_selector("#alert.error", state="hidden")
        screenshot(page, "segments-builder-1440")

        # a community condition by clicking: in 宝妈福利群, tier 0-1岁, within 7 days
        page.click("#seg-new")
        page.select_option(".seg-cond >> nth=0 >> select.seg-kind", "community")
        row = page.locator(".seg-cond").nth(0)
        row.get_by_label("社群", exact=True).select_option(label="宝妈福利群")
        row = page.locator(".seg-cond").nth(0)
        row.get_by_label("入群状态").select_option("joined")
        row.get_by_label("分层").select_option(label="0-1岁")
        row.get_by_label("时间范围").select_option("days")
        row = page.locator(".seg-cond").nth(0)
        row.get_by_label("最近天数").fill("7")
        page.click("#seg-preview")
        expect(page.locator("#seg-sample")).to_have_text("妈妈B")
        assert page.inner_text("#seg-count") == "1"
        row.get_by_label("分层").select_option(label="3-6岁")
        page.click("#seg-preview")
        expect(page.locator("#seg-count")).to_have_text("0")
        row.get_by_label("分层").select_option(label="0-1岁")
        page.click("#seg-preview")
        expect(page.locator("#seg-count")).to_have_text("1")
        screenshot(page, "segments-builder-community")

        # an event with a property filter and a date range, by clicking
        from datetime import UTC, datetime, timedelta

        from liebian.events.store import EventRow

        assert runtime.event_store is not None
        runtime.event_store.insert(
            [
                EventRow(
                    workspace_id=ws,
                    event_id="douyin-1",
                    event="purchase",
                    ts=datetime.now(UTC) - timedelta(hours=3),
                    user_id="爸爸C",
                    channel="douyin",
                )
            ]
        )
        page.click("#seg-new")
        page.select_option(".seg-cond >> nth=0 >> select.seg-kind", "event")
        row = page.locator(".seg-cond").nth(0)
        row.get_by_label("事件").fill("purchase")
        row.get_by_label("时间范围").select_option("all")
        row = page.locator(".seg-cond").nth(0)
        row.get_by_role("button", name="＋ 属性筛选").click()
        row = page.locator(".seg-cond").nth(0)
        row.get_by_label("筛选字段").fill("channel")
        row.get_by_label("筛选值").fill("douyin")
        page.click("#seg-preview")
        expect(page.locator("#seg-sample")).to_have_text("爸爸C")
        row.get_by_label("时间范围").select_option("dates")
        row = page.locator(".seg-cond").nth(0)
        row.get_by_label("开始日期").fill("2020-01-01")
        row.get_by_label("结束日期").fill("2020-01-31")
        page.click("#seg-preview")
        expect(page.locator("#seg-count")).to_have_text("0")
        screenshot(page, "segments-builder-filters")
        assert not errors, errors
