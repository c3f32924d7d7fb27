"""社群 console pages and the phone entry page in headless Chromium (screenshots in artifacts/)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from community_helpers import PNG, WECHAT_UA, mother_baby

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from browser_support import chromium, expect, live_server, screenshot

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "connectors"))

from wecom_fake import AES_KEY, CORP_ID, SECRET, TOKEN, fake_wecom


@pytest.fixture
def server(settings: Any, runtime: Any) -> Iterator[str]:
    from liebian.app.factory import create_app

    with live_server(create_app(settings, runtime)) as url:
        yield url


@pytest.mark.browser
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_communities_console_and_entry_page_in_chromium(
    server: str, owner: dict[str, str], runtime: Any
) -> None:
    with fake_wecom() as fake:
        _console_and_entry_page(server, owner, runtime, fake)


def _connect_wecom(runtime: Any, fake: Any) -> None:
    from sqlalchemy import select

    from liebian.connectors.wecom import service as wecom
    from liebian.kit.auth import Principal, Role
    from liebian.kit.db import session_scope
    from liebian.workspaces.models import Workspace

    runtime.settings.wecom_api_base = fake.url
    fake.chats["wrA"] = "zhangsan"
    with session_scope(runtime.sessions) as session:
        ws = session.scalars(select(Workspace.id).where(Workspace.name == "测试工作区")).one()
        wecom.connect(session, Principal(ws, Role.owner), runtime.cipher,
                      wecom.ConnectionInput(CORP_ID, SECRET, TOKEN, AES_KEY))  # fmt: skip


def _console_and_entry_page(server: str, owner: dict[str, str], runtime: Any, fake: Any) -> None:
    _connect_wecom(runtime, fake)
    api = httpx.Client(base_url=server, headers=owner, timeout=10)
    api.post("/api/v1/contact-attributes", json={"key": "baby_birthday", "type": "date"})
    body = mother_baby(rules={"banned_keywords": ["代购"], "alert_keywords": ["多少钱"]})
    body["name"] = "宝妈交流群 <b>&"
    cid = api.post("/api/v1/communities", json=body).json()["id"]
    g = api.post(
        f"/api/v1/communities/{cid}/groups",
        json={
            "name": "0–3 岁 1 群",
            "tier": "t03",
            "owner": "zhangsan",
            "capacity": 3,
            "qr_image": PNG,
        },
    ).json()
    api.post(
        f"/api/v1/communities/{cid}/groups", json={"name": "北京群", "tier": "bj", "capacity": 200}
    )
    wg = api.post(
        f"/api/v1/communities/{cid}/groups",
        json={"name": "企微福利群", "platform": "wecom", "chat_id": "wrA", "owner": "张三"},
    ).json()
    bot = api.post(
        "/api/v1/channels",
        json={
            "kind": "webhook",
            "name": "品牌群机器人",
            "config": {"url": "https://bot.example/hook"},
        },
    )
    assert bot.status_code == 201, bot.text
    bot_id = bot.json()["id"]
    for kind, text in (("title", "周五拼团"), ("content", "三人成团，立减 20 元"), ("image", PNG)):
        assert (
            api.post("/api/v1/community-materials", json={"kind": kind, "body": text}).status_code
            == 201
        )
    out = api.post("/api/v1/community-messages", json={"messages": [
        {"message_id": "m1", "group_id": g["id"], "external_id": "u1", "text": "有代购吗"},
        {"message_id": "m2", "group_id": g["id"], "external_id": "u2", "text": "这个多少钱"}]})  # fmt: skip
    assert out.status_code == 200, out.text
    key = owner["Authorization"].split(" ", 1)[1]
    with chromium() as browser:
        # -- the participant's phone, inside WeChat: screen, route, see the group QR
        phone = browser.new_context(viewport={"width": 390, "height": 844}, user_agent=WECHAT_UA,
                                    locale="zh-CN", device_scale_factor=2, is_mobile=True, has_touch=True)  # fmt: skip
        p = phone.new_page()
        p.goto(f"{server}/c/{cid}")
        assert "宝妈交流群 <b>&" in p.inner_text("#community-name")
        screenshot(p, "communities-entry-phone")
        p.fill("#q_birthday", "2025-02-03")
        p.check("input[name=q_city][value='上海']")
        p.check("input[name=q_topics][value='辅食']")
        p.click("#join")
        p.wait_for_selector("#group-qr")
        assert p.inner_text("#group-name") == "0–3 岁 1 群"
        assert p.evaluate("() => document.querySelector('#group-qr').naturalWidth") == 1
        screenshot(p, "communities-group-phone")
        phone.close()
        # The join's community event reaches the metrics when the flusher loads it (every
        # second, in SCHED_IDLE): load it now, so the metrics below do not race the flusher
        # (a CI run read the day's row before the load: 0 joins, 0 members).
        runtime.flush_events()

        # -- the console: list → detail, groups with fill, inbox, rules, metrics
        context = browser.new_context(viewport={"width": 1440, "height": 900}, locale="zh-CN")
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        # The bad pattern below is refused on purpose (422): any other console error counts.
        page.on(
            "console",
            lambda m: errors.append(m.text) if m.type == "error" and "422" not in m.text else None,
        )
        page.goto(server + "/admin/login?next=%2Fadmin%2Fcommunities")
        page.fill("input[name=key]", key)
        page.click("#login-form button[type=submit]")
        page.wait_for_url("**/admin/communities")
        page.wait_for_selector("body[data-communities-ready]")
        assert "宝妈交流群 <b>&" in page.inner_text("#cm-table")
        screenshot(page, "communities-list")
        page.click("#cm-table a")
        page.wait_for_selector("body[data-communities-ready]")
        assert page.inner_text("#cd-name") == "宝妈交流群 <b>&"
        row = page.locator(f"tr[data-group='{g['id']}']")
        assert "1 / 3" in row.inner_text()
        assert page.locator("#tk-list li").count() == 2  # the warning and the keyword alert
        page.locator("#tk-list li", has_text="警告").get_by_role("button", name="完成").click()
        expect(page.locator("#tk-list li")).to_have_count(1)
        # Add a group through the form; save rules with a bad pattern (refused) then a good one.
        page.fill("#gp-form input[name=name]", "3–8 岁 1 群")
        page.select_option("#gp-tier", "t38")
        page.fill("#gp-form input[name=capacity]", "150")
        page.click("#gp-form button[type=submit]")
        page.wait_for_selector("#gp-table td:has-text('3–8 岁 1 群')")
        page.click("#rl-card summary")
        page.fill("#rl-form textarea[name=banned_patterns]", "(未闭合")
        page.click("#rl-form button[type=submit]")
        page.wait_for_selector("#alert.error")
        # The console's shared alert (liebianConsole.showError): the 422 and the bad pattern.
        refused = page.inner_text("#alert")
        assert "输入有误" in refused and "(未闭合" in refused
        page.fill("#rl-form textarea[name=banned_patterns]", r"返现\d+元")
        page.check("#rl-form input[name=block_links]")
        page.click("#rl-form button[type=submit]")
        page.wait_for_selector("#alert.ok")
        page.wait_for_selector("#mt-table tbody tr")
        assert page.locator("#mt-chart rect").count() >= 1
        # 成员 by day beside 入群 / 退群: the participant's join today, one member at its end.
        assert page.locator("#mt-chart-members rect").count() >= 1
        today = page.locator("#mt-days tbody tr").last.locator("td").all_inner_texts()
        assert today[1:] == ["1", "1", "0"], today
        # 内容日历: a weekly post through the form, listed; paused with its button.
        page.click("#cal-card summary")
        page.fill("#cal-form input[name=title]", "周三秒杀")
        page.fill("#cal-form input[name=at]", "20:00")
        page.fill("#cal-form input[name=link_url]", "https://shop.example/flash")
        page.check("#cal-days input[value='3']")
        page.fill("#cal-form textarea[name=text]", "今晚 8 点秒杀")
        page.click("#cal-form button[type=submit]")
        page.wait_for_selector("#cal-table td:has-text('周三秒杀')")
        row = page.inner_text("#cal-table tbody tr")
        assert "周三" in row and "启用" in row
        page.locator("#cal-table button", has_text="暂停").click()
        page.wait_for_selector("#cal-table td.cal-status:has-text('暂停')")
        # 素材库: title, content and image drawn from the library into a new post.
        page.locator("#mat-title li", has_text="周五拼团").get_by_role(
            "button", name="使用"
        ).click()
        page.locator("#mat-content li", has_text="三人成团").get_by_role(
            "button", name="使用"
        ).click()
        page.locator("#mat-image li").get_by_role("button", name="使用").click()
        assert page.is_visible("#cal-image-img")
        page.fill("#cal-form input[name=at]", "19:30")
        page.click("#cal-form button[type=submit]")
        page.wait_for_selector("#cal-table td:has-text('周五拼团')")
        # 首日任务: a task row through the editor, saved on the community.
        page.click("#fd-card summary")
        page.click("#ed-first-day button:has-text('添加')")
        page.fill("#ed-first-day input[name=key]", "coupon")
        page.fill("#ed-first-day input[name=label]", "领新人券")
        page.fill("#ed-first-day input[name=url]", "https://shop.example/coupon")
        page.click("#fd-form button[type=submit]")
        page.wait_for_selector("#alert.ok:has-text('已保存首日任务')")
        # 入群页预览: the entry page at phone size in a frame (signed address, button disabled).
        page.click("#pv-card summary")
        frame = page.frame_locator("#pv-frame")
        expect(frame.locator("#community-name")).to_have_text("宝妈交流群 <b>&")
        expect(frame.locator("#join")).to_be_disabled()
        src = page.get_attribute("#pv-frame", "src") or ""
        assert httpx.get(server + src, timeout=10).status_code == 200
        assert (
            httpx.get(server + src[:-1] + ("0" if src[-1] != "0" else "1"), timeout=10).status_code
            == 403
        )
        # The group's bot (decision 0044) and the owner's WeCom userid, set in the console.
        page.locator(f"tr[data-group='{g['id']}'] button", has_text="设置").click()
        edit = page.locator(f"tr[data-edit='{g['id']}']")
        edit.locator("select[name=bot_channel_id]").select_option(bot_id)
        edit.get_by_role("button", name="保存").click()
        page.wait_for_selector(f"tr[data-group='{g['id']}'] .sub:has-text('机器人：品牌群机器人')")
        page.locator(f"tr[data-group='{wg['id']}'] button", has_text="设置").click()
        edit = page.locator(f"tr[data-edit='{wg['id']}']")
        edit.locator("input[name=owner_wecom_userid]").fill("张 三")  # not a WeCom userid: 422
        edit.get_by_role("button", name="保存").click()
        page.wait_for_selector("#alert.error:has-text('owner_wecom_userid')")
        edit.locator("input[name=owner_wecom_userid]").fill("zhangsan")
        edit.get_by_role("button", name="保存").click()
        page.wait_for_selector(f"tr[data-group='{wg['id']}'] .sub:has-text('企微 zhangsan')")
        # 企业微信群发: a task for the owner, pending until confirmed in WeCom, then sent.
        page.click("#wp-card summary")
        assert page.inner_text("#wp-cap") == "4"
        page.fill("#wp-form textarea[name=text]", "周三秒杀，今晚 8 点开抢")
        page.click("#wp-form button[type=submit]")
        page.wait_for_selector("#wp-table td:has-text('待群主确认')")
        assert "企微福利群：待确认" in page.inner_text("#wp-table")
        [msgid] = list(fake.tasks)
        fake.confirm(msgid)
        page.locator("#wp-table button", has_text="刷新结果").click()
        page.wait_for_selector("#wp-table td:has-text('已发送')")
        assert "企微福利群：已发送" in page.inner_text("#wp-table")
        assert page.locator("#wp-table button", has_text="刷新结果").count() == 0
        page.locator("#cal-card").screenshot(path=str(screenshot(page, "communities-calendar")))
        screenshot(page, "communities-detail")
        assert errors == []
    posts = {p["title"]: p for p in api.get(f"/api/v1/communities/{cid}/posts").json()}
    assert posts["周五拼团"]["text"] == "三人成团，立减 20 元" and posts["周五拼团"]["image"] == PNG
    assert posts["周五拼团"]["at"] == "19:30"
    groups = {x["id"]: x for x in api.get(f"/api/v1/communities/{cid}/groups").json()}
    assert groups[g["id"]]["bot_channel_id"] == bot_id
    assert groups[wg["id"]]["owner_wecom_userid"] == "zhangsan"
    assert [t["chat_id_list"] for t in fake.group_templates()] == [["wrA"]]
    saved = api.get(f"/api/v1/communities/{cid}").json()
    rules = saved["rules"]
    assert rules["banned_patterns"] == [r"返现\d+元"] and rules["block_links"] is True
    assert [(t["key"], t["label"], t["url"]) for t in saved["first_day_tasks"]] == [
        ("coupon", "领新人券", "https://shop.example/coupon")
    ]
