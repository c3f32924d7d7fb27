"""Two friends on phones (WeChat's user agent, 360×740) sign in on the campaign pages
themselves — one by phone and the code the loopback SMS provider received, one through the
loopback WeChat web authorization — and then join and accept the invite with the pages'
buttons. Screenshots go to artifacts/ for a person to look at (Chinese must render)."""

from __future__ import annotations

import gzip
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from browser_support import ARTIFACTS, chromium, live_server

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "channels"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "campaigns"))
from channel_fakes import serve, sms_provider
from fission_helpers import INVITE
from pages_wechat_fake import wechat

UA_WECHAT = (
    "Mozilla/5.0 (Linux; Android 13; V2227A Build/TP1A.220624.014; wv) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Version/4.0 Chrome/116.0.0.0 Mobile Safari/537.36 XWEB/1160083 "
    "MMWEBSDK/20231202 MMWEBID/1234 MicroMessenger/8.0.47.2560(0x28002F30) WeChat/arm64 "
    "Weixin NetType/WIFI Language/zh_CN ABI/arm64"
)
WIDTH = 360
SMS_SECRET = "sms-signing-secret"


@pytest.fixture
def server(settings: Any, runtime: Any) -> Iterator[str]:
    from liebian.app.factory import create_app

    with live_server(create_app(settings, runtime)) as url:
        yield url


# The storage rules have their tests on both databases (tests/campaigns/test_pages_sign_in.py);
# the browser walk is about the pages, and one backend keeps the suite's time small.
@pytest.mark.browser
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_friends_sign_in_by_sms_code_and_wechat(
    server: str, owner: dict[str, str], runtime: Any, db_url: str
) -> None:
    backend = "pg" if db_url.startswith("postgresql") else "sqlite"
    with serve(sms_provider(SMS_SECRET)) as sms, wechat() as wx:
        runtime.settings.wechat_open_base = wx.url
        runtime.settings.wechat_api_base = wx.url
        channel = httpx.post(f"{server}/api/v1/channels", headers=owner, json={
            "kind": "sms", "name": "短信", "config": {"url": sms.url, "app_id": "lb"},
            "secret": SMS_SECRET}).json()["id"]  # fmt: skip
        put = httpx.put(f"{server}/api/v1/participant-sign-in", headers=owner, json={
            "methods": ["wechat", "sms", "token"], "sms_channel_id": channel,
            "wechat_app_id": wx.app_id, "wechat_app_secret": wx.secret,
            "wechat_scope": "snsapi_userinfo"})  # fmt: skip
        assert put.status_code == 200, put.text
        config = {**INVITE, "new_users_only": False, "risk": {"mode": "allow"}}
        cid = httpx.post(f"{server}/api/v1/campaigns", headers=owner, json={
            "type": "invite", "name": "邀请好友·领试听课", "config": config,
            "share_text": "邀请 1 位好友即得 5 元券"}).json()["id"]  # fmt: skip

        with chromium() as browser:

            def phone() -> Any:
                ctx = browser.new_context(viewport={"width": WIDTH, "height": 740},
                                          user_agent=UA_WECHAT, device_scale_factor=2)  # fmt: skip
                return ctx.new_page()

            def shot(page: Any, name: str) -> None:
                assert page.evaluate("document.documentElement.scrollWidth") <= WIDTH
                assert len(gzip.compress(page.content().encode())) < 50_000
                page.screenshot(
                    path=str(ARTIFACTS / f"signin-{name}-{backend}.png"), full_page=True
                )

            ARTIFACTS.mkdir(exist_ok=True)
            # Phone 1: by phone number and SMS code.
            lead = phone()
            lead.goto(f"{server}/p/{cid}?ch=wechat_group")
            shot(lead, "1-entry-anonymous")
            lead.click("#sign-in-link")
            lead.wait_for_url(f"**/p/{cid}/signin?next=**")
            assert lead.locator("#wechat").count() == 1
            shot(lead, "2-choose")
            lead.fill("#phone", "138 0013 8000")
            lead.click("#send-code")
            lead.wait_for_selector("#code-step")
            assert "138****8000" in lead.inner_text("#code-step")
            shot(lead, "3-code-sent")
            text = list(sms.accepted.values())[-1]["text"]
            code = re.search(r"\d{6}", text).group(0)  # type: ignore[union-attr]
            wrong = "000000" if code != "000000" else "111111"
            lead.fill("#code", wrong)
            lead.click("#verify")
            lead.wait_for_selector("#problem")
            assert "还可以再试 4 次" in lead.inner_text("#problem")
            shot(lead, "4-wrong-code")
            lead.fill("#code", code)
            lead.click("#verify")
            lead.wait_for_url(f"**/p/{cid}?ch=wechat_group")
            lead.click("#join")
            lead.wait_for_url(f"**/p/{cid}/me")
            invite_url = lead.inner_text("#invite-url")
            shot(lead, "5-me")

            # Phone 2: opens the invite, signs in with WeChat, accepts.
            friend = phone()
            invite_path = "/p/" + invite_url.split("/p/", 1)[1]
            friend.goto(f"{server}{invite_path}")
            assert "邀请你参加" in friend.inner_text("main")
            friend.click("#sign-in-link")
            wx.user = {"openid": "o-friend", "unionid": "u-friend", "nickname": "小林"}
            friend.click("#wechat")
            # (The browser keeps WeChat's "#wechat_redirect" fragment through the redirects.)
            friend.wait_for_url(lambda url: urlsplit(url).path == invite_path)
            shot(friend, "6-invite-signed-in")
            friend.click("#join")
            friend.wait_for_url(f"**/p/{cid}/me")
            shot(friend, "7-friend-me")

            # A refusal on the way is a Chinese page too.
            friend.goto(f"{server}/p/{cid}/signin/wechat/callback?code=x&state=forged")
            assert (
                "登录已过期" in friend.inner_text("main")
                and friend.locator("a.btn.ghost").count() == 1
            )
            shot(friend, "8-state-refused")

    refs = httpx.get(
        f"{server}/api/v1/referrals", params={"campaign_id": cid}, headers=owner
    ).json()
    pairs = [(r["referrer"]["external_id"], r["referee"]["external_id"]) for r in refs["items"]]
    assert len(pairs) == 1 and pairs[0][0].startswith("sms_") and pairs[0][1] == "wx_u-friend"
