"""Signing in on the participant pages without the brand's server (SQLite and PostgreSQL):
phone + one-time SMS code through the workspace's SMS channel (a loopback provider speaking
the channel's protocol), WeChat web authorization against a loopback WeChat; the person is
one contact found again by their aliases; join and help work after sign-in; every refusal a
Chinese page; return addresses never leave the site; codes never logged."""

from __future__ import annotations

import logging
import re
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fission_helpers import ASSIST_UNLOCK, INVITE, create
from pages_wechat_fake import wechat

from liebian.kit.clock import utcnow
from liebian.kit.db import session_scope
from liebian.kit.errors import RateLimited
from liebian.participants import service as sign_in
from liebian.participants.session import (
    SESSION_COOKIE,
    safe_next,
    session_identity,
    session_value,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "channels"))
from channel_fakes import serve, sms_provider

ONE_INVITE = {**INVITE, "new_users_only": False, "risk": {"mode": "allow"}}
SMS_SECRET = "sms-signing-secret"


def _chinese_page(resp: Any, status: int, title: str) -> None:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("text/html")
    assert title in resp.text and "你可以" in resp.text


def _csrf(page: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]


def _sms_setup(client: Any, owner: dict[str, str], url: str) -> str:
    channel = client.post(
        "/api/v1/channels", headers=owner,
        json={"kind": "sms", "name": "短信", "config": {"url": url, "app_id": "lb"}, "secret": SMS_SECRET},
    )  # fmt: skip
    assert channel.status_code == 201, channel.text
    put = client.put(
        "/api/v1/participant-sign-in", headers=owner,
        json={"methods": ["sms", "token"], "sms_channel_id": channel.json()["id"]},
    )  # fmt: skip
    assert put.status_code == 200 and put.json()["offered"] == ["sms", "token"], put.text
    return str(channel.json()["id"])


def _last_code(provider: Any) -> str:
    text = list(provider.accepted.values())[-1]["text"]
    return re.search(r"(\d{6})", text).group(1)  # type: ignore[union-attr]


def _ask_code(client: Any, cid: str, phone: str, nxt: str) -> Any:
    form = client.get(f"/p/{cid}/signin", params={"next": nxt})
    assert form.status_code == 200 and 'id="phone"' in form.text
    return client.post(
        f"/p/{cid}/signin/sms", data={"phone": phone, "next": nxt, "csrf": _csrf(form.text)}
    )


def test_sms_sign_in_is_the_brands_contact_and_joins(
    client: Any, owner: dict[str, str], runtime: Any, caplog: Any
) -> None:
    caplog.set_level(logging.DEBUG)
    with serve(sms_provider(SMS_SECRET)) as provider:
        _sms_setup(client, owner, provider.url)
        cid = create(client, owner, "invite", ONE_INVITE, name="邀请有礼")
        # The brand already knows this person (its CRM): the phone signs in as them.
        with session_scope(runtime.sessions) as session:
            from liebian.contacts.service import ContactInput, upsert

            upsert(
                session, runtime.cipher, _ws(runtime), ContactInput("crm-7", phone="13800138000")
            )
        anonymous = client.get(f"/p/{cid}")
        assert 'id="sign-in-link"' in anonymous.text
        assert f'href="/p/{cid}/signin?next=/p/{cid}"' in anonymous.text.replace("%2F", "/")

        sent = _ask_code(client, cid, "+86 138-0013-8000", f"/p/{cid}")
        assert sent.status_code == 200 and "138****8000" in sent.text, sent.text
        message = list(provider.accepted.values())[-1]
        assert message["phone"] == "13800138000" and message["out_id"].startswith("sign-in:smc_")
        code = _last_code(provider)
        csrf = _csrf(sent.text)
        wrong = "000000" if code != "000000" else "111111"
        again = client.post(f"/p/{cid}/signin/sms/verify",
                            data={"phone": "13800138000", "code": wrong, "next": f"/p/{cid}", "csrf": csrf})  # fmt: skip
        assert again.status_code == 422 and "还可以再试 4 次" in again.text
        ok = client.post(f"/p/{cid}/signin/sms/verify",
                         data={"phone": "13800138000", "code": code, "next": f"/p/{cid}", "csrf": csrf})  # fmt: skip
        assert ok.status_code == 303 and ok.headers["location"] == f"/p/{cid}", ok.text
        set_cookie = ok.headers["set-cookie"]
        assert f"{SESSION_COOKIE}=" in set_cookie and "HttpOnly" in set_cookie
        assert "samesite=lax" in set_cookie.lower()
        # A code signs in once.
        _chinese_page(
            client.post(f"/p/{cid}/signin/sms/verify",
                        data={"phone": "13800138000", "code": code, "csrf": csrf}),
            410, "验证码已失效",
        )  # fmt: skip

        entry = client.get(f"/p/{cid}")
        assert 'id="join"' in entry.text
        # Signals from the request, whatever the form says.
        joined = client.post(f"/p/{cid}/join", data={"ip": "6.6.6.6", "user_agent": "forged"},
                             headers={"user-agent": "UA-phone"})  # fmt: skip
        assert joined.status_code == 303 and joined.headers["location"] == f"/p/{cid}/me"
        me = client.get(f"/p/{cid}/me")
        assert me.status_code == 200 and "已用手机号登录" in me.text
        out = client.post(f"/p/{cid}/signout", data={"csrf": _csrf(me.text)})
        assert out.status_code == 303 and f'{SESSION_COOKIE}=""' in out.headers["set-cookie"]
        assert 'id="sign-in-link"' in client.get(f"/p/{cid}").text

    from sqlalchemy import text

    from liebian.campaigns.referrals import ip_hash

    with runtime.sessions() as session:
        row = session.execute(
            text("SELECT c.external_id, p.ip_hash, p.user_agent FROM participants p"
                 " JOIN contacts c ON c.id = p.contact_id")
        ).one()  # fmt: skip
        aliases = session.execute(
            text("SELECT kind FROM contact_aliases a JOIN contacts c ON c.id = a.contact_id"
                 " WHERE c.external_id = 'crm-7' ORDER BY kind")
        ).scalars().all()  # fmt: skip
        stored = (
            session.execute(text("SELECT code_hash FROM participant_sms_codes")).scalars().all()
        )
    assert row[0] == "crm-7"  # one person: the brand's contact, not a second copy
    assert row[1] == ip_hash(runtime.cipher, "testclient") and row[2] == "UA-phone"
    assert "phone_hash" in aliases and "visitor_id" in aliases
    assert code not in stored[0]
    assert all(code not in record.getMessage() for record in caplog.records)


def _ws(runtime: Any) -> str:
    from sqlalchemy import text

    with runtime.sessions() as session:
        return str(session.execute(text("SELECT id FROM workspaces")).scalar_one())


def test_a_new_phone_is_a_new_contact_with_encrypted_phone(
    client: Any, owner: dict[str, str], runtime: Any
) -> None:
    with serve(sms_provider(SMS_SECRET)) as provider:
        _sms_setup(client, owner, provider.url)
        acid = create(client, owner, "assist", ASSIST_UNLOCK, name="助力领课")
        ws = _ws(runtime)
        # The owner (signed in by the brand) starts an assist; a friend signs in by phone and helps.
        with session_scope(runtime.sessions) as session:
            from liebian.campaigns import assists

            aid = assists.start(session, runtime.cipher, ws, acid, "owner-1").id
        page = client.get(f"/a/{aid}")
        assert 'id="sign-in-link"' in page.text
        sent = _ask_code(client, acid, "13900001111", f"/a/{aid}")
        code = _last_code(provider)
        done = client.post(f"/p/{acid}/signin/sms/verify", data={
            "phone": "13900001111", "code": code, "next": f"/a/{aid}", "csrf": _csrf(sent.text)})  # fmt: skip
        assert done.status_code == 303 and done.headers["location"] == f"/a/{aid}"
        assert 'id="help"' in client.get(f"/a/{aid}").text
        assert client.post(f"/a/{aid}/help").status_code == 303
        assert 'id="helped"' in client.get(f"/a/{aid}").text
    from sqlalchemy import select

    from liebian.contacts.models import Contact

    with runtime.sessions() as session:
        friend = session.scalars(select(Contact).where(Contact.external_id.like("sms_%"))).one()
        assert runtime.cipher.decrypt(friend.phone_enc) == "13900001111"
        assert friend.phone_hash == runtime.cipher.lookup_hash("13900001111")
        assert "13900001111" not in friend.external_id


def test_sms_refusals_are_chinese_pages(client: Any, owner: dict[str, str], runtime: Any) -> None:
    with serve(sms_provider(SMS_SECRET)) as provider:
        cid = create(client, owner, "invite", ONE_INVITE)
        # Not offered yet: the page says where to go, a code is refused.
        assert 'id="no-self-service"' in client.get(f"/p/{cid}/signin").text
        form = client.get(f"/p/{cid}/signin")
        _chinese_page(client.post(f"/p/{cid}/signin/sms", data={
            "phone": "13800138000", "csrf": _csrf_or_blank(form.text)}), 403, "页面已过期")  # fmt: skip
        _sms_setup(client, owner, provider.url)
        form = client.get(f"/p/{cid}/signin")
        csrf = _csrf(form.text)
        _chinese_page(client.post(f"/p/{cid}/signin/sms", data={"phone": "12345", "csrf": csrf}),
                      422, "手机号不正确")  # fmt: skip
        # A form from another site carries no device cookie: refused, nothing sent.
        foreign = httpx.Client(transport=client._transport, base_url="http://sho.rt")
        _chinese_page(foreign.post(f"/p/{cid}/signin/sms", data={"phone": "13800138000", "csrf": csrf}),
                      403, "页面已过期")  # fmt: skip
        assert provider.count() == 0
        _chinese_page(client.post(f"/p/{cid}/signin/sms/verify", data={
            "phone": "13800138000", "code": "123456", "csrf": csrf}), 410, "验证码已失效")  # fmt: skip
        # The provider refuses: a Chinese page, not a 500.
        provider.state["fail_next"] = 99
        _chinese_page(client.post(f"/p/{cid}/signin/sms", data={"phone": "13800138000", "csrf": csrf}),
                      503, "短信发送失败")  # fmt: skip
    _check_code_limits(runtime, owner, client)


def _csrf_or_blank(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    return found.group(1) if found else ""


def _check_code_limits(runtime: Any, owner: dict[str, str], client: Any) -> None:
    """One code a phone a minute, five an hour, twenty an IP an hour; five tries a code;
    a code lasts five minutes (the service, with its clock given)."""
    with serve(sms_provider(SMS_SECRET)) as provider:
        _sms_setup(client, owner, provider.url)
        cid = create(client, owner, "invite", ONE_INVITE)
    ws = _ws(runtime)
    t0 = utcnow().replace(second=5, microsecond=0)

    def ask(phone: str, at: Any, ip: str = "1.1.1.1") -> Any:
        with session_scope(runtime.sessions) as session:
            return sign_in.request_code(
                session, runtime.cipher, runtime.secret, ws, cid, phone, ip, now=at
            )

    def check(phone: str, code: str, at: Any) -> Any:
        with session_scope(runtime.sessions) as session:
            return sign_in.check_code(
                session, runtime.cipher, runtime.secret, ws, phone, code, now=at
            )

    # Racing requests for one phone in one minute: one code (the unique slot), on both databases.
    from concurrent.futures import ThreadPoolExecutor

    def race(_: int) -> str:
        try:
            ask("13800000009", t0)
            return "sent"
        except RateLimited as exc:
            return exc.code

    with ThreadPoolExecutor(4) as pool:
        assert sorted(pool.map(race, range(4))) == ["sent", "sms_wait", "sms_wait", "sms_wait"]
    ask("13800000001", t0)
    with pytest.raises(RateLimited) as wait:
        ask("13800000001", t0 + timedelta(seconds=30))
    assert wait.value.code == "sms_wait"
    for minute in range(1, 5):
        ask("13800000001", t0 + timedelta(minutes=minute))
    with pytest.raises(RateLimited) as many:
        ask("13800000001", t0 + timedelta(minutes=6))
    assert many.value.code == "sms_too_many"
    ask("13800000001", t0 + timedelta(minutes=61))  # the hour has passed
    for i in range(20 - 6):
        ask(f"1370000{i:04d}", t0, ip="9.9.9.9")
    for i in range(6):
        ask(f"1360000{i:04d}", t0, ip="9.9.9.9")
    with pytest.raises(RateLimited):
        ask("13500000000", t0, ip="9.9.9.9")

    # Tries: a wrong code counts, five wrong ones void it (the right one then fails too).
    pending = ask("13300000000", t0)
    assert pending.content["text"].startswith("【验证码】")
    code = re.search(r"\d{6}", str(pending.content["text"])).group(0)  # type: ignore[union-attr]
    wrong = "999999" if code != "999999" else "888888"
    results = [check("13300000000", wrong, t0) for _ in range(5)]
    assert [r.problem for r in results] == ["sms_code_wrong"] * 4 + ["sms_code_locked"]
    assert [r.tries_left for r in results[:4]] == [4, 3, 2, 1]
    assert check("13300000000", code, t0).problem == "sms_code_locked"
    # Expiry: five minutes.
    pending = ask("13300000000", t0 + timedelta(minutes=1))
    code = re.search(r"\d{6}", str(pending.content["text"])).group(0)  # type: ignore[union-attr]
    assert (
        check("13300000000", code, t0 + timedelta(minutes=6, seconds=1)).problem
        == "sms_code_expired"
    )
    pending = ask("13300000000", t0 + timedelta(minutes=2))
    code = re.search(r"\d{6}", str(pending.content["text"])).group(0)  # type: ignore[union-attr]
    assert check("13300000000", code, t0 + timedelta(minutes=3)).contact is not None


def _wechat_settings(
    client: Any, owner: dict[str, str], fake: Any, runtime: Any, scope: str
) -> None:
    runtime.settings.wechat_open_base = fake.url
    runtime.settings.wechat_api_base = fake.url
    put = client.put("/api/v1/participant-sign-in", headers=owner, json={
        "methods": ["wechat", "token"], "wechat_app_id": fake.app_id,
        "wechat_app_secret": fake.secret, "wechat_scope": scope})  # fmt: skip
    assert put.status_code == 200, put.text
    assert fake.secret not in put.text and put.json()["wechat_secret_hint"] == fake.secret[-4:]


def _via_wechat(client: Any, fake: Any, cid: str, nxt: str) -> Any:
    start = client.get(f"/p/{cid}/signin/wechat", params={"next": nxt})
    assert start.status_code == 302, start.text
    location = start.headers["location"]
    assert location.startswith(f"{fake.url}/connect/oauth2/authorize?") and location.endswith(
        "#wechat_redirect"
    )
    back = httpx.get(location.split("#")[0], follow_redirects=False)  # the person's WeChat
    assert back.status_code == 302
    callback = urlsplit(back.headers["location"])
    assert callback.path == f"/p/{cid}/signin/wechat/callback"
    return client.get(f"{callback.path}?{callback.query}")


def test_wechat_sign_in_userinfo(client: Any, owner: dict[str, str], runtime: Any) -> None:
    with wechat() as fake:
        _wechat_settings(client, owner, fake, runtime, "snsapi_userinfo")
        cid = create(client, owner, "invite", ONE_INVITE, name="微信登录活动")
        page = client.get(
            f"/p/{cid}/signin", headers={"user-agent": "Mozilla/5.0 MicroMessenger/8.0.47"}
        )
        assert 'id="wechat"' in page.text
        fake.user = {"openid": "o-alice", "unionid": "u-alice", "nickname": "小爱"}
        done = _via_wechat(client, fake, cid, f"/p/{cid}?ch=wx")
        assert done.status_code == 303 and done.headers["location"] == f"/p/{cid}?ch=wx", done.text
        authorize = next(q for p, q in fake.calls if p == "/connect/oauth2/authorize")
        assert authorize["scope"] == "snsapi_userinfo" and authorize["redirect_uri"].endswith(
            f"/p/{cid}/signin/wechat/callback"
        )
        assert client.post(f"/p/{cid}/join").status_code == 303
        # Same person again on another phone with another openid of the same unionid.
        client.cookies.clear()
        fake.user = {"openid": "o-alice-2", "unionid": "u-alice", "nickname": "小爱"}
        assert _via_wechat(client, fake, cid, f"/p/{cid}").status_code == 303
        assert 'id="go-me"' in client.get(f"/p/{cid}").text  # already a participant
    from sqlalchemy import text

    with runtime.sessions() as session:
        rows = session.execute(text("SELECT id, external_id, nickname_enc FROM contacts")).all()
        aliases = dict(session.execute(
            text("SELECT value, kind FROM contact_aliases WHERE kind LIKE 'wx_%'")).all())  # fmt: skip
    assert len(rows) == 1 and rows[0][1] == "wx_u-alice"
    assert runtime.cipher.decrypt(rows[0][2]) == "小爱"
    assert aliases == {"o-alice": "wx_openid", "u-alice": "wx_unionid", "o-alice-2": "wx_openid"}
    client.cookies.clear()
    _check_wechat_refusals(client, owner, runtime)


def _check_wechat_refusals(client: Any, owner: dict[str, str], runtime: Any) -> None:
    with wechat() as fake:
        cid = create(client, owner, "invite", ONE_INVITE)
        _wechat_settings(client, owner, fake, runtime, "snsapi_userinfo")
        client.put(f"/api/v1/campaigns/{cid}/participant-sign-in", headers=owner,
                   json={"methods": ["token"]})  # fmt: skip
        _chinese_page(client.get(f"/p/{cid}/signin/wechat"), 403, "暂不支持这种登录方式")
        client.delete(f"/api/v1/campaigns/{cid}/participant-sign-in", headers=owner)
        fake.user = {"openid": "o-bob"}
        # A callback whose state is not this browser's (CSRF): refused.
        start = client.get(f"/p/{cid}/signin/wechat")
        state = parse_qs(urlsplit(start.headers["location"]).query)["state"][0]
        _chinese_page(client.get(f"/p/{cid}/signin/wechat/callback", params={"code": "x", "state": state + "x"}),
                      403, "登录已过期")  # fmt: skip
        other = httpx.Client(transport=client._transport, base_url="http://sho.rt")
        _chinese_page(other.get(f"/p/{cid}/signin/wechat/callback", params={"code": "x", "state": state}),
                      403, "登录已过期")  # fmt: skip
        # A code WeChat does not know (or one used already).
        _chinese_page(client.get(f"/p/{cid}/signin/wechat/callback", params={"code": "bogus", "state": state}),
                      401, "微信登录失败")  # fmt: skip
        # Declined.
        fake.decline = True
        _chinese_page(_via_wechat(client, fake, cid, f"/p/{cid}"), 401, "未完成微信授权")
        fake.decline = False
        # A 朋友圈 snapshot page's virtual user.
        fake.user = {"openid": "o-virtual", "is_snapshotuser": 1}
        _chinese_page(_via_wechat(client, fake, cid, f"/p/{cid}"), 401, "请打开完整页面")
        # WeChat unreachable.
        runtime.settings.wechat_api_base = "http://127.0.0.1:9"
        fake.user = {"openid": "o-bob"}
        _chinese_page(_via_wechat(client, fake, cid, f"/p/{cid}"), 503, "暂时连不上微信")
        runtime.settings.wechat_api_base = fake.url
        # Where a sign-in returns: only a participant page of this site.
        for evil in ("https://evil.example/p/x", "//evil.example/p/x", "/\\evil.example", "/admin",
                     "/p/../admin", "javascript:alert(1)"):  # fmt: skip
            done = _via_wechat(client, fake, cid, evil)
            assert done.status_code == 303 and done.headers["location"] == f"/p/{cid}", evil


def test_session_values_and_return_addresses() -> None:
    secret = b"k" * 32
    value = session_value(secret, "ws_a", "sms", "crm-7")
    assert session_identity(secret, value, "ws_a") == ("crm-7", "sms")
    assert session_identity(secret, value, "ws_b") is None  # another brand on the same site
    assert session_identity(b"x" * 32, value, "ws_a") is None
    assert session_identity(secret, value[:-2] + "AA", "ws_a") is None
    assert (
        session_identity(secret, session_value(secret, "ws_a", "sms", "u", now=0), "ws_a") is None
    )
    assert safe_next("/g/grp_1", "/p/c") == "/g/grp_1"
    assert safe_next("/p/c/abc?ch=wx", "/p/c") == "/p/c/abc?ch=wx"
    for bad in ("http://x/p/c", "//x/p/c", "/p//x", "/admin", "/p/c/../../admin", "", None):
        assert safe_next(bad, "/p/c") == "/p/c"


def test_sign_in_settings_api(client: Any, owner: dict[str, str]) -> None:
    got = client.get("/api/v1/participant-sign-in", headers=owner).json()
    assert got["methods"] == ["token"] and got["offered"] == ["token"]
    bad = client.put("/api/v1/participant-sign-in", headers=owner, json={"methods": ["sms"]})
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "sign_in_method_incomplete"
    cid = create(client, owner, "invite", ONE_INVITE)
    inherited = client.get(f"/api/v1/campaigns/{cid}/participant-sign-in", headers=owner).json()
    assert inherited["inherited"] is True
    refused = client.put(f"/api/v1/campaigns/{cid}/participant-sign-in", headers=owner,
                         json={"methods": ["wechat"]})  # fmt: skip
    assert refused.status_code == 422
    with serve(sms_provider(SMS_SECRET)) as provider:
        _sms_setup(client, owner, provider.url)
    # This campaign keeps to the brand's own link while the workspace offers SMS.
    put = client.put(f"/api/v1/campaigns/{cid}/participant-sign-in", headers=owner,
                     json={"methods": ["token"]})  # fmt: skip
    assert put.status_code == 200 and put.json()["offered"] == ["token"]
    assert 'id="sign-in-link"' not in client.get(f"/p/{cid}").text
    assert (
        client.delete(f"/api/v1/campaigns/{cid}/participant-sign-in", headers=owner).status_code
        == 204
    )
    assert 'id="sign-in-link"' in _fresh(client, f"/p/{cid}")
    assert (
        client.get("/api/v1/campaigns/cmp_nope/participant-sign-in", headers=owner).status_code
        == 404
    )


def _fresh(client: Any, path: str) -> str:
    """The page once the lean path's cache (≤ 2 s) shows the change (bounded wait)."""
    import time

    for _ in range(200):
        text = str(client.get(path).text)
        if 'id="sign-in-link"' in text:
            return text
        time.sleep(0.05)
    return text
