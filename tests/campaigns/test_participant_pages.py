"""Participant pages that act, for a person signed in by the brand's participant token:
join and get an invite link, invite a friend, open and join a group, help; self-service
progress and rewards; every refusal a Chinese page (SQLite and PostgreSQL)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from fission_helpers import ASSIST_UNLOCK, GROUP_BUY, INVITE, create

from liebian.campaigns import participant_token
from liebian.client import participant_token as sign

ONE_INVITE = {**INVITE, "new_users_only": False, "risk": {"mode": "allow"}}


def _key(client: Any, owner: dict[str, str]) -> str:
    resp = client.get("/api/v1/participant-token-key", headers=owner)
    assert resp.status_code == 200, resp.text
    return str(resp.json()["key"])


def _as(client: Any, key: str, external_id: str, path: str) -> Any:
    """Open ``path`` as ``external_id`` (the brand's signed link), following the redirect that
    drops the token from the address."""
    client.cookies.clear()  # another person: another phone (device cookie, user agent)
    client.headers["user-agent"] = f"Phone/{external_id}"
    sep = "&" if "?" in path else "?"
    first = client.get(f"{path}{sep}t={sign(key, external_id)}")
    assert first.status_code == 303, first.text
    assert "t=" not in first.headers["location"]
    return client.get(first.headers["location"])


def _chinese_page(resp: Any, status: int, title: str) -> None:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("text/html")
    assert title in resp.text and "你可以" in resp.text


def test_token_round_trip_and_refusals() -> None:
    key = "ptk_test"
    token = sign(key, "用户-1", ttl_seconds=60)
    assert participant_token.verify(key, token) == "用户-1"
    with pytest.raises(Exception) as expired:
        participant_token.verify(key, sign(key, "u", ttl_seconds=-1))
    assert getattr(expired.value, "code", "") == "token_expired"
    for bad in (token + "x", token.replace("v1.", "v2."), "v1.abc", sign("other", "用户-1")):
        with pytest.raises(Exception) as err:
            participant_token.verify(key, bad)
        assert getattr(err.value, "code", "") == "token_invalid"
    assert (
        participant_token.verify(key, sign(key, "u", now=time.time() - 30, ttl_seconds=60)) == "u"
    )


def test_join_invite_and_self_service(client: Any, owner: dict[str, str], runtime: Any) -> None:
    cid = create(client, owner, "invite", ONE_INVITE, name="邀请有礼")
    key = _key(client, owner)
    anonymous = client.get(f"/p/{cid}?ch=app")
    assert anonymous.status_code == 200 and 'id="sign-in"' in anonymous.text
    entry = _as(client, key, "alice", f"/p/{cid}?ch=app")
    assert 'id="join"' in entry.text and 'name="ch" value="app"' in entry.text
    # The form says nothing about who or where from: signals come from the request.
    joined = client.post(
        f"/p/{cid}/join", data={"ch": "app", "ip": "6.6.6.6"}, headers={"user-agent": "UA-alice"}
    )
    assert joined.status_code == 303 and joined.headers["location"] == f"/p/{cid}/me"
    me = client.get(f"/p/{cid}/me")
    assert me.status_code == 200 and 'id="invite-url"' in me.text
    invite_url = me.text.split('id="invite-url">')[1].split("<")[0]
    code = invite_url.rsplit("/", 1)[1]
    assert invite_url == f"http://sho.rt/p/{cid}/{code}"
    poster = client.get(f"/p/{cid}/me/poster")
    assert poster.status_code == 200
    assert client.get(f"/p/{cid}/me/poster.png").headers["content-type"] == "image/png"

    # bob opens alice's invite and accepts it.
    landing = _as(client, key, "bob", f"/p/{cid}/{code}")
    assert 'name="referrer_code"' in landing.text and "邀请你参加" in landing.text
    assert client.post(f"/p/{cid}/join", data={"referrer_code": code}).status_code == 303
    referrals = client.get("/api/v1/referrals", params={"campaign_id": cid}, headers=owner).json()
    assert [
        (r["referrer"]["external_id"], r["referee"]["external_id"]) for r in referrals["items"]
    ] == [("alice", "bob")]

    # alice sees her reward without asking support (自助查询).
    mine = _as(client, key, "alice", f"/p/{cid}/me")
    assert '<b id="counted">1</b>' in mine.text and "5元券" in mine.text and "已发放" in mine.text

    with runtime.sessions() as session:
        from sqlalchemy import text

        row = session.execute(
            text("SELECT p.ip_hash, p.user_agent, p.channel, p.visitor_id FROM participants p"
                 " JOIN contacts c ON c.id = p.contact_id WHERE c.external_id = 'alice'")
        ).one()  # fmt: skip
    from liebian.campaigns.referrals import ip_hash

    assert row[0] == ip_hash(runtime.cipher, "testclient") and row[1] == "UA-alice"
    assert row[2] == "app" and row[3]

    runtime.flush_events()
    names = [r[0] for r in runtime.event_store.query(
        "SELECT event FROM events WHERE campaign_id = $c", {"c": cid})]  # fmt: skip
    assert names.count("invite_click") == 1 and names.count("share") == 1
    assert names.count("campaign_join") == 2 and "page_view" in names


def test_refusals_are_chinese_pages(client: Any, owner: dict[str, str]) -> None:
    cid = create(client, owner, "invite", ONE_INVITE)
    key = _key(client, owner)
    _chinese_page(client.get(f"/p/{cid}/nope1234"), 404, "邀请链接无效")
    _chinese_page(client.get("/p/cmp_01JAAAAAAAAAAAAAAAAAAAAAAA"), 404, "活动不存在")
    _chinese_page(client.get(f"/p/{cid}?t=v1.x.1.y"), 401, "请重新进入")
    _chinese_page(client.get(f"/p/{cid}?t={sign(key, 'u', ttl_seconds=-5)}"), 401, "登录已过期")
    client.cookies.clear()
    _chinese_page(client.post(f"/p/{cid}/join"), 401, "请先登录")
    _as(client, key, "zoe", f"/p/{cid}")
    client.post(f"/api/v1/campaigns/{cid}/end", headers=owner)
    _chinese_page(client.post(f"/p/{cid}/join"), 410, "活动已结束")


def test_group_and_assist_from_pages(client: Any, owner: dict[str, str]) -> None:
    gcid = create(client, owner, "group_buy", {**GROUP_BUY, "tiers": [{"size": 2, "price": 9_900}]})
    key = _key(client, owner)
    _as(client, key, "lead", f"/p/{gcid}")
    opened = client.post(f"/p/{gcid}/groups")
    assert opened.status_code == 303 and opened.headers["location"].startswith("/g/grp_")
    gpath = opened.headers["location"]
    assert 'id="in-group"' in client.get(gpath).text
    page = _as(client, key, "g2", gpath)
    assert 'id="join-group"' in page.text
    assert client.post(f"{gpath}/join").status_code == 303
    assert "拼团成功" in client.get(gpath).text
    _as(client, key, "g3", gpath)
    _chinese_page(client.post(f"{gpath}/join"), 409, "这个团已拼成")

    acid = create(client, owner, "assist", ASSIST_UNLOCK)
    _as(client, key, "owner", f"/p/{acid}")
    started = client.post(f"/p/{acid}/assists")
    assert started.status_code == 303
    apath = started.headers["location"]
    assert 'id="mine"' in client.get(apath).text
    _chinese_page(client.post(f"{apath}/help"), 409, "不能为自己助力")
    assert 'id="help"' in _as(client, key, "h1", apath).text
    assert client.post(f"{apath}/help").status_code == 303
    assert 'id="helped"' in client.get(apath).text
    _chinese_page(client.post(f"{apath}/help"), 409, "你已经助力过了")
