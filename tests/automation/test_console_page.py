"""The 旅程 console page in headless Chromium: build a journey by clicking (no JSON), save,
publish, preview a message on a contact, per-step stats, a template in one step."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from journey_support import make_tag

from browser_support import ON_SQLITE_ONLY, chromium, live_server, screenshot
from liebian.app.runtime import Runtime
from liebian.kit.db import session_scope
from testkit import make_key


@pytest.fixture
def server(settings: Any, runtime: Runtime) -> Iterator[str]:
    from liebian.app.factory import create_app

    with live_server(create_app(settings, runtime)) as url:
        yield url


@pytest.mark.browser
@ON_SQLITE_ONLY
def test_journey_builder_by_clicking(server: str, runtime: Runtime) -> None:
    from liebian.automation.executor import Executor
    from liebian.automation.models import Journey
    from liebian.channels.config import ChannelInput, create_channel
    from liebian.contacts.service import ContactInput, upsert

    ws, headers = make_key(runtime, "owner")
    tag = make_tag(runtime.sessions, ws, "已欢迎")
    with session_scope(runtime.sessions) as s:
        upsert(s, runtime.cipher, ws, ContactInput(external_id="u1", nickname="小明"))
        create_channel(s, runtime, ws, ChannelInput(kind="webhook", name="企业回调",
                                                    config={"url": "http://127.0.0.1:9/x"}))  # fmt: skip
        from liebian.campaigns.service import create as create_campaign
        from liebian.kit.auth import Principal, Role

        campaign_id = create_campaign(
            s, Principal(workspace_id=ws, role=Role.owner), campaign_type="invite",
            name="邀请有礼", config={"tiers": [{"invites": 1, "reward": {
                "kind": "coupon", "name": "5元券", "amount": 500}}]},
        ).id  # fmt: skip
    plaintext = headers["Authorization"].split(" ", 1)[1]
    with chromium() as browser:
        page = browser.new_context(
            viewport={"width": 1440, "height": 900}, locale="zh-CN"
        ).new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(server + "/admin/journeys")
        page.wait_for_url("**/admin/login?next=%2Fadmin%2Fjourneys")
        page.fill("input[name=key]", plaintext)
        page.click("#login-form button[type=submit]")
        page.wait_for_url("**/admin/journeys")
        page.wait_for_selector("body[data-journeys-ready]")
        assert page.is_visible("#jr-empty")
        page.fill("#jr-name", "新人欢迎")
        first = page.locator(".jr-step").nth(0)
        first.locator("textarea").fill("{{ contact.nickname | default('朋友') }}，欢迎加入！")
        page.click("#jr-add")
        page.locator(".jr-step").nth(1).get_by_label("天").fill("1")
        page.click("#jr-add")
        third = page.locator(".jr-step").nth(2)
        third.locator("select.jr-kind").select_option("add_tag")
        page.locator(".jr-step").nth(2).get_by_label("已欢迎").check()
        # the first message carries the campaign's invite link; a last step joins the campaign
        first.locator("select.jr-send-campaign").select_option(campaign_id)
        page.click("#jr-add")
        page.locator(".jr-step").nth(3).locator("select.jr-kind").select_option("enrol_campaign")
        page.locator(".jr-step").nth(3).locator("select.jr-campaign").select_option(campaign_id)
        page.click("#jr-publish")
        page.wait_for_selector("#jr-list >> text=进行中")
        journey = _off_loop(lambda: _journey(runtime, Journey))
        assert journey.status == "live" and journey.live_version == 1
        assert [st["type"] for st in journey.draft["steps"]] == [
            "send", "wait", "add_tag", "enrol_campaign"]  # fmt: skip
        assert journey.draft["steps"][2]["tag_ids"] == [tag]
        assert journey.draft["steps"][0]["campaign_id"] == campaign_id
        assert journey.draft["steps"][3]["campaign_id"] == campaign_id
        jid = journey.id
        # a bad edit is explained, nothing saved: an unknown template field
        first.locator("textarea").fill("{{ contact.password }}")
        page.click("#jr-save")
        page.wait_for_selector("#alert.error")
        assert "contact.password" in page.inner_text("#alert")
        # The console's shared alert (liebianConsole.showError): the status in Chinese and a
        # close button, not a copy of its own.
        assert page.inner_text("#alert strong").startswith("输入有误")
        assert page.locator("#alert button.close").count() == 1
        # preview on a contact: the message rendered with their nickname
        page.fill("#jr-sample", "u1")
        first.locator("textarea").fill("{{ contact.nickname | default('朋友') }}，欢迎加入！")
        page.click("#jr-save")
        page.wait_for_selector("#alert.ok")
        page.click("#jr-preview")
        page.wait_for_selector("#jr-preview-box:not([hidden])")
        assert "小明，欢迎加入！" in page.inner_text("#jr-preview-box")
        # people go through; the stats show per step
        import httpx
        from fastapi.testclient import TestClient  # noqa: F401  (not used: real HTTP below)

        r = httpx.post(f"{server}/api/v1/journeys/{jid}/enrol", json={"external_ids": ["u1"]},
                       headers=headers)  # fmt: skip
        assert r.json() == {"entered": 1, "skipped": 0}, r.text
        _off_loop(lambda: _run_steps(runtime, Executor))
        page.reload()
        page.wait_for_selector("body[data-journeys-ready]")
        page.click("#jr-list >> text=新人欢迎")
        page.wait_for_selector("#jr-stats:not([hidden])")
        assert "进入 1" in page.inner_text("#jr-stats-sum")
        rows = page.locator("#jr-stats-rows tr")
        assert rows.count() == 4
        # a template in one step
        page.select_option("#jr-template", "warmup_7day")
        page.click("#jr-from-template")
        page.wait_for_selector("#alert.ok >> text=7 天新人培育")
        page.wait_for_selector(".jr-step >> nth=9")
        assert page.locator(".jr-step").count() == 10
        screenshot(page, "journeys_console")
        assert errors == []


def _off_loop(fn: Any) -> Any:
    """Playwright's sync API runs an event loop on this thread; the database refuses work on
    an event-loop thread, so do it on another."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(fn).result()


def _journey(runtime: Runtime, model: Any) -> Any:
    with session_scope(runtime.sessions) as s:
        (journey,) = s.query(model).all()
        return journey


def _run_steps(runtime: Runtime, executor: Any) -> None:
    ex = executor(runtime.sessions, runtime=runtime)
    try:
        ex.run_until_idle()
    finally:
        ex.close()
