"""The 渠道 console page in headless Chromium: add a WeCom robot channel, send a test message
that arrives at a loopback robot, a personal-WeChat channel's task confirmed from the inbox,
quiet hours saved. Screenshot at 1440 px in artifacts/."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent))
sys.path.insert(0, str(Path(__file__).parent))

from channel_fakes import contact, serve, wecom_robot

from browser_support import chromium, live_server, screenshot


@pytest.fixture
def server(settings: Any, runtime: Any) -> Iterator[str]:
    from liebian.app.factory import create_app

    with live_server(create_app(settings, runtime)) as url:
        yield url


@pytest.mark.browser
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_channels_console_in_chromium(server: str, owner: dict[str, str], runtime: Any) -> None:
    import httpx

    ws = httpx.get(server + "/api/v1/workspace", headers=owner, timeout=60).json()["id"]
    contact(runtime, ws, "u1001")
    js = httpx.get(server + "/admin/static/channels.js", timeout=60).text
    assert ".innerHTML" not in js
    key = owner["Authorization"].split(" ", 1)[1]
    with serve(wecom_robot("K3Y-123")) as robot, chromium() as browser:
        context = browser.new_context(viewport={"width": 1440, "height": 900}, locale="zh-CN")
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(server + "/admin/login?next=%2Fadmin%2Fchannels")
        page.fill("input[name=key]", key)
        page.click("#login-form button[type=submit]")
        page.wait_for_url("**/admin/channels")
        page.wait_for_selector("body[data-channels-ready]")
        page.click("#ch-create-box summary")
        page.select_option("#ch-kind", "wecom_robot")
        page.fill("#ch-form input[name=name]", "福利群机器人")
        page.fill("#ch-form input[name=robot_url]",
                  robot.url.rstrip("/") + "/cgi-bin/webhook/send?key=K3Y-123")  # fmt: skip
        page.click("#ch-form button[type=submit]")
        card = page.wait_for_selector(".ch-card:has-text('福利群机器人')")
        assert "K3Y-123" not in card.inner_text() and page.is_hidden("#ch-secret")
        card.query_selector(".ch-test").click()  # type: ignore[union-attr]
        page.wait_for_selector(".ch-card .ch-result[data-status=sent]")
        assert [m["msgtype"] for m in robot.accepted.values()] == ["text"]
        # A personal-WeChat channel: the test creates a task; 已完成 confirms it.
        page.click("#ch-create-box summary")
        page.select_option("#ch-kind", "personal_wechat")
        page.fill("#ch-form input[name=name]", "顾问个人微信")
        page.fill("#ch-form input[name=assignee]", "小王")
        page.click("#ch-form button[type=submit]")
        wx = page.wait_for_selector(".ch-card:has-text('顾问个人微信')")
        wx.query_selector("input[name=contact_id]").fill("u1001")  # type: ignore[union-attr]
        wx.query_selector(".ch-test").click()  # type: ignore[union-attr]
        page.wait_for_selector("#ch-task-rows tr:has-text('小王')")
        page.fill("#ch-quiet-form input[name=quiet_start]", "22:00")
        page.click("#ch-quiet-form button")
        page.wait_for_selector("#alert.ok:has-text('22:00')")
        screenshot(page, "channels-console")
        page.click("#ch-task-rows button")
        page.wait_for_selector("#ch-task-empty:not([hidden])")
        assert not errors, errors
    settings = httpx.get(server + "/api/v1/channel-settings", headers=owner, timeout=60).json()
    assert settings["quiet_start"] == "22:00"
