"""Done-when for issue 12, in a browser: an operator creates a campaign from a template in
the console, changes its reward in the form (no JSON), launches it and takes the share link;
three friends on phones (WeChat's user agent) join, invite and complete a group; the campaign
page then shows exactly those numbers and the tree."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from browser_support import chromium, live_server, screenshot
from liebian.client import participant_token as sign

UA_WECHAT = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
    "Gecko) Mobile/15E148 MicroMessenger/8.0.44(0x18002c2f) NetType/WIFI Language/zh_CN"
)


@pytest.fixture
def server(settings: Any, runtime: Any) -> Iterator[str]:
    from liebian.app.factory import create_app

    with live_server(create_app(settings, runtime)) as url:
        yield url


@pytest.mark.browser
def test_operator_and_three_friends(server: str, owner: dict[str, str], db_url: str) -> None:
    backend = "pg" if db_url.startswith("postgresql") else "sqlite"
    key = owner["Authorization"].split(" ", 1)[1]
    with chromium() as browser:
        ops = browser.new_context(
            viewport={"width": 1440, "height": 900}, locale="zh-CN"
        ).new_page()
        errors: list[str] = []
        ops.on("pageerror", lambda e: errors.append(str(e)))
        ops.on("dialog", lambda d: d.accept())
        ops.goto(server + "/admin/campaigns")
        ops.wait_for_url("**/admin/login*")
        ops.fill("input[name=key]", key)
        ops.click("#login-form button[type=submit]")
        ops.wait_for_selector("body[data-ready]")
        # ① template (filtered to e-commerce) → a draft, opened on its own page.
        ops.select_option("#tpl-filter select[name=industry]", "ecommerce")
        ops.click("#tpl-filter button[type=submit]")
        card = ops.locator(".tpl", has_text="拼团3人成团").first
        card.locator("input[name=name]").fill("三人拼团测试")
        card.locator("button[type=submit]").click()
        ops.wait_for_url("**/admin/campaigns/cmp_*")
        ops.wait_for_selector("body[data-ready]")
        cid = ops.url.rsplit("/", 1)[1]
        # ② rules in a form: a 3-person group at ¥88; copy with a lint error is shown inline.
        ops.fill("input[name='tiers.0.size']", "3")
        ops.fill("input[name='tiers.0.price_yuan']", "88")
        ops.fill("textarea[name=share_text]", "转发到三个微信群即可参与")
        ops.wait_for_selector("#cd-lint .bad")
        ops.fill("textarea[name=share_text]", "三人成团，每人 88 元")
        ops.click("#cd-rules button[type=submit]")
        ops.wait_for_selector("#alert.ok")
        assert "第 2 版" in ops.inner_text("#cd-type")
        # ③ launch, take the share link of the WeChat-group channel.
        ops.click("#cd-launch")
        ops.locator("#cd-status", has_text="进行中").wait_for()
        share = ops.locator(".share-url").first.inner_text()
        assert share.endswith(f"/p/{cid}?ch=wechat_group")
        screenshot(ops, f"console-campaign-setup-{backend}")

        config = httpx.get(f"{server}/api/v1/campaigns/{cid}", headers=owner).json()["config"]
        assert config["tiers"][0] == {"size": 3, "price": 8_800}
        token_key = httpx.get(f"{server}/api/v1/participant-token-key", headers=owner).json()["key"]
        entry = share.replace("http://sho.rt", server)

        # Three friends on phones.
        group_url = ""
        invite_code = ""
        for i, name in enumerate(("amy", "ben", "cat")):
            phone = browser.new_context(
                viewport={"width": 360, "height": 740}, user_agent=UA_WECHAT
            ).new_page()
            if i == 0:
                phone.goto(f"{entry}&t={sign(token_key, name)}")
                phone.click("#join")
                phone.wait_for_url("**/me")
                invite_code = phone.inner_text("#invite-url").rsplit("/", 1)[1]
                phone.click("#open-group")
                phone.wait_for_url("**/g/grp_*")
                group_url = phone.url
            else:
                phone.goto(f"{server}/p/{cid}/{invite_code}?t={sign(token_key, name)}")
                phone.click("#join")
                phone.wait_for_url("**/me")
                phone.goto(group_url)
                phone.click("#join-group")
                phone.wait_for_url(group_url)
            screenshot(phone, f"phone-{name}-{backend}")
        assert "拼团成功" in phone.inner_text("#status")

        # The dashboard on the campaign page (refreshed by the page itself).
        # Every figure comes from the event store, fresh within the flusher's interval; the
        # group-buy order (GMV) is written by the last join, after the joins, so wait for it too.
        for _ in range(600):
            t = httpx.get(f"{server}/api/v1/campaigns/{cid}/dashboard", headers=owner).json()[
                "totals"
            ]
            if t["participants"] >= 3 and t["friend_joins"] >= 2 and t["gmv"] >= 26_400:
                break
            time.sleep(0.05)
        ops.reload()
        ops.wait_for_selector("body[data-ready]")
        stats = dict(
            zip(ops.locator("#cd-stats .label").all_inner_texts(),
                ops.locator("#cd-stats b").all_inner_texts(), strict=True)
        )  # fmt: skip
        assert stats["参与人数"] == "3" and stats["好友参与"] == "2"
        assert stats["带来 GMV"] == "¥264.00" and stats["K 值"] == "0.6667"
        assert "共 3 人，最深 2 层" in ops.inner_text("#cd-tree-summary")
        ops.locator("#cd-tree li button").first.click()
        ops.wait_for_selector("#cd-tree li ul li")
        assert ops.locator("#cd-tree li ul li").count() == 2
        actions = ops.locator("#cd-changes tbody tr td:nth-child(2)").all_inner_texts()
        assert actions == ["上线", "修改", "创建"]
        screenshot(ops, f"console-campaign-live-{backend}")
        assert errors == []
