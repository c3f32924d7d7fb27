"""Three friends on phones (WeChat's user agent, 360 px) join, invite and complete a group
from the participant pages; the campaign dashboard then shows exactly those actions.
Screenshots go to artifacts/ for a person to look at."""

from __future__ import annotations

import gzip
import time
from typing import Any
from urllib.parse import urlparse

import httpx
import pytest
from fission_helpers import GROUP_BUY

from browser_support import ARTIFACTS, ON_SQLITE_ONLY, chromium
from liebian.client import participant_token as sign

UA_WECHAT = (
    "Mozilla/5.0 (Linux; Android 13; V2227A Build/TP1A.220624.014; wv) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Version/4.0 Chrome/116.0.0.0 Mobile Safari/537.36 XWEB/1160083 "
    "MMWEBSDK/20231202 MMWEBID/1234 MicroMessenger/8.0.47.2560(0x28002F30) WeChat/arm64 "
    "Weixin NetType/WIFI Language/zh_CN ABI/arm64"
)
WIDTH = 360


def _dashboard(
    server: str, owner: dict[str, str], cid: str, participants: int, gmv: int
) -> dict[str, Any]:
    """The dashboard once the flusher has loaded every action the test made — the group-buy
    order (GMV) can land a flush after the joins (bounded wait, no time assert)."""
    for _ in range(600):
        d = httpx.get(f"{server}/api/v1/campaigns/{cid}/dashboard", headers=owner).json()
        t = d["totals"]
        if (
            t["participants"] >= participants
            and t["friend_joins"] >= 2
            and t["friend_clicks"] >= 2
            and t["gmv"] >= gmv
        ):
            return d
        time.sleep(0.05)
    return d


@pytest.mark.browser
@ON_SQLITE_ONLY
def test_three_friends_on_phones(server: str, owner: dict[str, str], db_url: str) -> None:
    backend = "pg" if db_url.startswith("postgresql") else "sqlite"
    config = {**GROUP_BUY, "tiers": [{"size": 3, "price": 9_900}], "leader_discount": 0}
    cid = httpx.post(
        f"{server}/api/v1/campaigns",
        json={"type": "group_buy", "name": "三人拼团·Python入门课", "config": config,
              "share_text": "三人成团，每人 99 元"},
        headers=owner,
    ).json()["id"]  # fmt: skip
    key = httpx.get(f"{server}/api/v1/participant-token-key", headers=owner).json()["key"]
    with chromium() as browser:
        phones = {}
        for name in ("lead", "friend2", "friend3"):
            ctx = browser.new_context(
                viewport={"width": WIDTH, "height": 740},
                user_agent=UA_WECHAT,
                device_scale_factor=2,
            )
            page = ctx.new_page()
            hosts: set[str] = set()
            page.on("request", lambda req, hosts=hosts: hosts.add(urlparse(req.url).netloc))
            phones[name] = (page, hosts)

        def shot(page: Any, name: str) -> None:
            assert page.evaluate("document.documentElement.scrollWidth") <= WIDTH
            html = page.content().encode()
            assert len(gzip.compress(html)) < 50_000
            page.screenshot(path=str(ARTIFACTS / f"phone-{name}-{backend}.png"), full_page=True)

        ARTIFACTS.mkdir(exist_ok=True)
        lead, _ = phones["lead"]
        lead.goto(f"{server}/p/{cid}?ch=wechat_group&t={sign(key, 'lead')}")
        shot(lead, "1-entry")
        lead.click("#join")
        lead.wait_for_url(f"**/p/{cid}/me")
        invite_url = lead.inner_text("#invite-url")
        shot(lead, "2-me")
        lead.click("#open-group")
        lead.wait_for_url("**/g/grp_*")
        group_url = lead.url
        shot(lead, "3-group-opened")

        code = invite_url.rsplit("/", 1)[1]
        for i, name in enumerate(("friend2", "friend3"), start=2):
            page, _ = phones[name]
            # The friend opens the leader's invite link first, joins, then the group.
            page.goto(f"{server}/p/{cid}/{code}?t={sign(key, name)}")
            assert "邀请你参加" in page.inner_text("main")
            page.click("#join")
            page.wait_for_url(f"**/p/{cid}/me")
            page.goto(group_url)
            page.click("#join-group")
            page.wait_for_url(group_url)
            assert f"已有 {i} 人" in page.inner_text("#group")
            shot(page, f"{i + 2}-{name}-joined")
        assert "拼团成功" in phones["friend3"][0].inner_text("#status")

        # A fourth person meets a Chinese page, not JSON.
        late = browser.new_context(viewport={"width": WIDTH, "height": 740}, user_agent=UA_WECHAT)
        lp = late.new_page()
        lp.goto(f"{group_url}?t={sign(key, 'late')}")
        assert lp.locator("#join-group").count() == 0
        lp.goto(f"{server}/p/{cid}/zzzzzzzz")
        assert "邀请链接无效" in lp.inner_text("main")
        shot(lp, "6-bad-invite")
        for _page, hosts in phones.values():
            assert hosts == {urlparse(server).netloc}  # nothing from a third party

    d = _dashboard(server, owner, cid, 3, 3 * 9_900)
    t = d["totals"]
    assert (t["participants"], t["friend_joins"], t["friend_conversions"]) == (3, 2, 0)
    assert t["friend_clicks"] == 2 and t["k_factor"] == round(2 / 3, 4)
    assert t["gmv"] == 3 * 9_900 and t["reward_cost"] == 0
    assert {c["channel"] for c in d["by_channel"]} >= {"wechat_group"}
    tree = httpx.get(f"{server}/api/v1/campaigns/{cid}/tree", headers=owner).json()
    assert [(n["external_id"], n["children"]) for n in tree["items"]] == [("lead", 2)]
    assert tree["max_depth"] == 2
