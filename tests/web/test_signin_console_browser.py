"""The 参与者登录 console page in headless Chromium: choose the campaign pages' sign-in methods
(a method that is not set up is refused in Chinese), set the SMS channel and the official
account (the AppSecret never shown back), then give one campaign its own methods and take
them back. Screenshot in artifacts/sign-in-console.png."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from browser_support import chromium, expect, live_server, screenshot

APP_SECRET = "0123456789abcdef0123456789abwxyz"


@pytest.fixture
def server(settings: Any, runtime: Any) -> Iterator[str]:
    from liebian.app.factory import create_app

    with live_server(create_app(settings, runtime)) as url:
        yield url


@pytest.mark.browser
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_sign_in_settings_page_in_chromium(server: str, owner: dict[str, str]) -> None:
    api = httpx.Client(base_url=server, headers=owner, timeout=30)
    channel = api.post("/api/v1/channels", json={
        "kind": "sms", "name": "短信通道", "config": {"url": "http://127.0.0.1:9/", "app_id": "lb"},
        "secret": "s" * 16}).json()["id"]  # fmt: skip
    campaign = api.post("/api/v1/campaigns", json={"type": "invite", "name": "春季邀请", "config": {
        "tiers": [{"invites": 3, "reward": {"kind": "coupon", "name": "5元券", "amount": 500}}]}},
    ).json()["id"]  # fmt: skip
    key = owner["Authorization"].split(" ", 1)[1]
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1440, "height": 900}, locale="zh-CN")
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        # The refused save below (422) is on purpose, and the browser's own favicon request
        # 404s; any other console error counts.
        page.on(
            "console",
            lambda m: (
                errors.append(f"{m.text} {m.location.get('url')}")
                if m.type == "error"
                and "422" not in m.text
                and not str(m.location.get("url", "")).endswith("/favicon.ico")
                else None
            ),
        )
        page.goto(server + "/admin/login?next=%2Fadmin%2Fsign-in")
        page.fill("input[name=key]", key)
        page.click("#login-form button[type=submit]")
        page.wait_for_url("**/admin/sign-in")
        page.wait_for_selector("body[data-sign-in-ready]")
        expect(page.locator("#si-offered")).to_have_text("品牌签名链接")
        assert page.is_checked("#si-methods input[value=token]")

        # SMS without a channel: refused, and the page says what is missing.
        page.check("#si-methods input[value=sms]")
        page.click("#si-form button[type=submit]")
        expect(page.locator("#alert.error")).to_contain_text("先选择一个短信渠道")

        # The channel, the official account and both methods.
        page.select_option("#si-form select[name=sms_channel_id]", channel)
        page.fill("#si-form textarea[name=sms_text]", "【春季】验证码 {code}，{minutes} 分钟内有效")
        page.check("#si-methods input[value=wechat]")
        page.fill("#si-form input[name=wechat_app_id]", "wx1234567890abcdef")
        page.fill("#si-form input[name=wechat_app_secret]", APP_SECRET)
        page.select_option("#si-form select[name=wechat_scope]", "snsapi_userinfo")
        page.click("#si-form button[type=submit]")
        expect(page.locator("#alert.ok")).to_contain_text("已保存")
        expect(page.locator("#si-offered")).to_have_text(
            "品牌签名链接、手机号 + 验证码、微信网页授权"
        )
        assert APP_SECRET not in page.content()
        assert page.input_value("#si-form input[name=wechat_app_secret]") == ""
        hint = page.get_attribute("#si-form input[name=wechat_app_secret]", "placeholder") or ""
        assert "wxyz" in hint
        saved = api.get("/api/v1/participant-sign-in").json()
        assert saved["methods"] == ["token", "sms", "wechat"]
        assert saved["sms_channel_id"] == channel and saved["wechat_scope"] == "snsapi_userinfo"
        assert saved["sms_text"] == "【春季】验证码 {code}，{minutes} 分钟内有效"

        # One campaign with only the phone code; then back to the workspace's.
        page.select_option("#si-campaign-form select[name=campaign_id]", campaign)
        expect(page.locator("#si-campaign-state")).to_contain_text("沿用工作区设置")
        page.uncheck("#si-campaign-methods input[value=token]")
        page.uncheck("#si-campaign-methods input[value=wechat]")
        page.check("#si-campaign-methods input[value=sms]")
        page.click("#si-campaign-save")
        expect(page.locator("#si-campaign-state")).to_have_text("本活动单独设置：手机号 + 验证码")
        own = api.get(f"/api/v1/campaigns/{campaign}/participant-sign-in").json()
        assert own["methods"] == ["sms"] and not own["inherited"]
        screenshot(page, "sign-in-console")
        page.click("#si-campaign-reset")
        expect(page.locator("#si-campaign-state")).to_contain_text("沿用工作区设置")
        assert api.get(f"/api/v1/campaigns/{campaign}/participant-sign-in").json()["inherited"]
        assert not errors, errors
