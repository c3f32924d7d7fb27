"""The WeCom connector end to end: the app served on loopback (uvicorn), the WeCom API fake
on loopback, callbacks encrypted and signed as WeCom does and POSTed over real HTTP."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import func, select
from wecom_fake import (
    AES_KEY,
    CORP_ID,
    SECRET,
    TOKEN,
    chat_event,
    contact_event,
    fake_wecom,
    post_callback,
    seal,
    tag_event,
    url_check,
)

from browser_support import live_server
from liebian.app.runtime import Runtime
from liebian.connectors.wecom import service
from liebian.connectors.wecom.callbacks import (
    TOPIC_CONTACT_ADDED,
    TOPIC_CONTACT_REMOVED,
    TOPIC_GROUP_CHANGED,
)
from liebian.connectors.wecom.models import WecomCallback, WecomConnection, WecomFollow
from liebian.contacts.models import Contact, ContactAlias
from liebian.kit.auth import Role
from liebian.kit.db import session_scope
from liebian.kit.settings import Settings
from liebian.workspaces.service import bootstrap, create_api_key


def _workspace(runtime: Runtime) -> tuple[str, dict[str, str]]:
    with session_scope(runtime.sessions) as session:
        ws, key = bootstrap(session, "企微测试")
        return ws.id, {"Authorization": f"Bearer {key}"}


# The HTTP contract, on SQLite and PostgreSQL (issue 13: every rule on both).
def test_connect_callbacks_and_client_calls(settings: Settings, runtime: Runtime) -> None:
    from liebian.app.factory import create_app

    topics: dict[str, list[Any]] = {TOPIC_CONTACT_ADDED: [], TOPIC_CONTACT_REMOVED: [],
                                    TOPIC_GROUP_CHANGED: []}  # fmt: skip
    for topic, seen in topics.items():
        runtime.bus.subscribe(topic, seen.append)
    ws, owner = _workspace(runtime)
    with (
        fake_wecom() as fake,
        live_server(create_app(settings, runtime)) as base,
        httpx.Client(base_url=base, timeout=10) as http,
    ):
        settings.wecom_api_base = fake.url
        api = "/api/v1/connectors/wecom"

        # -- (1) the connection: checked input, secrets encrypted and never shown -----------
        assert http.get(api, headers=owner).status_code == 404
        bad = http.put(api, headers=owner, json={"corp_id": CORP_ID, "agent_secret": SECRET,
                                                  "token": TOKEN, "encoding_aes_key": "short"})  # fmt: skip
        assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_wecom_aes_key"
        assert http.get(api, headers=owner).status_code == 404  # nothing half-written
        made = http.put(api, headers=owner, json={"corp_id": CORP_ID, "agent_secret": SECRET,
                                                   "token": TOKEN, "encoding_aes_key": AES_KEY})  # fmt: skip
        assert made.status_code == 200, made.text
        conn = made.json()
        text = made.text + http.get(api, headers=owner).text
        assert SECRET not in text and TOKEN not in text and AES_KEY not in text
        assert conn["secret_hint"] == "…" + SECRET[-4:]
        with runtime.read_sessions() as session:
            row = session.get(WecomConnection, conn["id"])
            assert (
                row is not None and SECRET not in row.secret_enc and AES_KEY not in row.aes_key_enc
            )
        # Roles: an analyst reads (no secrets) but may not change the connection or send.
        with session_scope(runtime.sessions) as session:
            _k, analyst_key = create_api_key(session, ws, Role.analyst, "analyst")
        analyst = {"Authorization": f"Bearer {analyst_key}"}
        assert http.get(api, headers=analyst).status_code == 200
        assert http.put(api, headers=analyst, json={"corp_id": CORP_ID}).status_code == 403
        assert (
            http.post(
                api + "/mass-sends",
                headers=analyst,
                json={"idempotency_key": "a", "external_userids": ["x"], "text": "x"},
            ).status_code
            == 403
        )
        # Changing only the corp fields keeps the stored secrets.
        kept = http.put(api, headers=owner, json={"corp_id": CORP_ID, "agent_id": "1000002"})
        assert kept.status_code == 200 and kept.json()["agent_id"] == "1000002"
        assert kept.json()["secret_hint"] == conn["secret_hint"]
        check = http.post(api + "/check", headers=owner)
        assert check.status_code == 200 and check.json()["ok"] is True
        callback = "/api/v1/connectors/wecom/callback/" + conn["id"]
        assert conn["callback_url"].endswith(callback)

        # -- (2) callbacks ------------------------------------------------------------------
        now = int(time.time())
        echo = http.get(callback, params=url_check("echo-789", timestamp=now))
        assert echo.status_code == 200 and echo.text == "echo-789"
        assert http.get(callback, params={**url_check("x", timestamp=now),
                                          "msg_signature": "0" * 40}).status_code == 403  # fmt: skip

        # A 联系我 way whose state names the channel, with a welcome text.
        way = http.post(
            api + "/ways",
            headers=owner,
            json={
                "kind": "contact",
                "state": "chn_poster",
                "targets": ["zhangsan"],
                "channel": "poster",
                "welcome_text": "欢迎加入！",
            },
        )
        assert way.status_code == 201, way.text
        assert way.json()["qr_code"].startswith("https://wework.qpic.cn/")
        assert way.json()["welcome_text"] == "欢迎加入！"
        again = http.post(
            api + "/ways",
            headers=owner,
            json={"kind": "contact", "state": "chn_poster", "targets": ["zhangsan"]},
        )
        assert again.json()["id"] == way.json()["id"]
        assert fake.paths().count("/cgi-bin/externalcontact/add_contact_way") == 1
        added = contact_event("add_external_contact", external="wmCust1", state="chn_poster",
                              welcome_code="WELCOME-1", create_time=now)  # fmt: skip
        first = post_callback(http, callback, seal(added, timestamp=now))
        assert first.status_code == 200 and first.text == ""
        # The way's welcome went out with the callback's WelcomeCode (after the answer).
        runtime.extras["wecom_auto_welcome"].drain()
        assert fake.welcomes == [{"welcome_code": "WELCOME-1", "text": {"content": "欢迎加入！"}}]
        # WeCom's retry: the same message, a new timestamp and nonce → applied once.
        assert post_callback(http, callback, seal(added, timestamp=now + 1)).status_code == 200
        # Bad signature, replayed timestamp: 403, nothing recorded.
        other = contact_event("add_external_contact", external="wmEvil", create_time=now)
        forged = seal(other, timestamp=now)
        forged.params["msg_signature"] = "f" * 40
        assert post_callback(http, callback, forged).status_code == 403
        assert post_callback(http, callback, seal(other, timestamp=now - 3600)).status_code == 403
        assert (
            post_callback(http, callback, seal(other, timestamp=now, token="Wrong1")).status_code
            == 403
        )

        assert len(topics[TOPIC_CONTACT_ADDED]) == 1
        payload = topics[TOPIC_CONTACT_ADDED][0]
        assert {k: payload[k] for k in ("workspace_id", "external_userid", "staff_userid",
                                        "state", "welcome_code")} == {
            "workspace_id": ws, "external_userid": "wmCust1", "staff_userid": "zhangsan",
            "state": "chn_poster", "welcome_code": "WELCOME-1",
        }  # fmt: skip
        with runtime.read_sessions() as session:
            assert session.scalar(select(func.count()).select_from(WecomCallback)) == 1
            follow = session.get(WecomFollow, (ws, "wmCust1", "zhangsan"))
            assert follow is not None and follow.status == "active" and follow.state == "chn_poster"
            contact = session.get(Contact, payload["contact_id"])
            assert contact is not None and contact.external_id == "wecom:wmCust1"
            alias = session.get(ContactAlias, (ws, "wecom_external_userid", "wmCust1"))
            assert alias is not None and alias.contact_id == contact.id
            assert session.scalar(select(func.count()).select_from(Contact).where(
                Contact.external_id == "wecom:wmEvil")) == 0  # fmt: skip

        # The customer removes the staff member; a group is created, joined, left, dismissed.
        for xml in (
            contact_event("del_follow_user", external="wmCust1", create_time=now + 5),
            chat_event("create", chat_id="wrG1", create_time=now + 6),
            chat_event("update", chat_id="wrG1", detail="add_member", members=["wmCust1", "wmC2"],
                       create_time=now + 7),
            chat_event("update", chat_id="wrG1", detail="del_member", members=["wmC2"],
                       create_time=now + 8),
            chat_event("dismiss", chat_id="wrG1", create_time=now + 9),
        ):  # fmt: skip
            assert post_callback(http, callback, seal(xml, timestamp=now)).status_code == 200
        removed = topics[TOPIC_CONTACT_REMOVED]
        assert [(r["external_userid"], r["by"]) for r in removed] == [("wmCust1", "customer")]
        assert removed[0]["contact_id"] == payload["contact_id"]
        groups = [
            (g["chat_id"], g["change"], g["joins"], g["leaves"])
            for g in topics[TOPIC_GROUP_CHANGED]
        ]
        assert groups == [
            ("wrG1", "create", [], []), ("wrG1", "update", ["wmCust1", "wmC2"], []),
            ("wrG1", "update", [], ["wmC2"]), ("wrG1", "dismiss", [], []),
        ]  # fmt: skip
        with runtime.read_sessions() as session:
            follow = session.get(WecomFollow, (ws, "wmCust1", "zhangsan"))
            assert follow is not None and follow.status == "removed_by_customer"

        # Events in the event store (through the spool), each once.
        runtime.flush_events()
        assert runtime.event_store is not None
        rows = runtime.event_store.query(
            "SELECT event, count(*) FROM events WHERE workspace_id = $ws GROUP BY event ORDER BY event",
            {"ws": ws},
        )
        assert rows == [("wecom_contact_added", 1), ("wecom_contact_removed", 1),
                        ("wecom_group_changed", 4)]  # fmt: skip
        assert runtime.event_store.query(
            "SELECT user_id, channel FROM events WHERE event = 'wecom_contact_added'", {}
        ) == [("wecom:wmCust1", "poster")]

        # WeCom says its corp tags changed: the mirror re-reads them by itself.
        fake.corp_tags = [{"group_id": "g1", "group_name": "客户等级",
                           "tag": [{"id": "et-gold", "name": "金卡"}]}]  # fmt: skip
        env = seal(tag_event("create", tag_id="et-gold", create_time=now + 10), timestamp=now)
        assert post_callback(http, callback, env).status_code == 200
        runtime.extras["wecom_auto_welcome"].drain()
        mirrored = http.get(api + "/tags", headers=owner).json()["items"]
        assert [(m["corp_tag_id"], m["name"]) for m in mirrored] == [("et-gold", "金卡")]

        # -- (3) client calls ---------------------------------------------------------------
        join = http.post(
            api + "/ways",
            headers=owner,
            json={"kind": "join", "state": "grp_03", "targets": ["wrG1"]},
        )
        assert join.status_code == 201 and join.json()["qr_code"].startswith(
            "https://wework.qpic.cn/join/"
        )
        bad_state = http.post(
            api + "/ways",
            headers=owner,
            json={"kind": "contact", "state": "有空格 的", "targets": ["zhangsan"]},
        )
        assert bad_state.status_code == 422
        listed = http.get(api + "/ways", headers=owner).json()["items"]
        assert sorted(w["state"] for w in listed) == ["chn_poster", "grp_03"]

        # Welcome message: once per code; WeCom's "used" code is a clear outcome.
        taken = http.post(api + "/welcome", headers=owner,
                          json={"welcome_code": "WELCOME-1", "text": "欢迎！"}).json()  # fmt: skip
        assert taken["status"] == "duplicate"  # the way's automatic welcome used it
        plain = contact_event("add_external_contact", external="wmCust3", state="unknown_state",
                              welcome_code="WELCOME-2", create_time=now + 30)  # fmt: skip
        post_callback(http, callback, seal(plain, timestamp=now))
        runtime.extras["wecom_auto_welcome"].drain()
        assert len(fake.welcomes) == 1  # no way, no text: nothing sent by itself
        sent = http.post(api + "/welcome", headers=owner,
                         json={"welcome_code": "WELCOME-2", "text": "欢迎！"})  # fmt: skip
        assert sent.json() == {"status": "sent", "reason": None, "errcode": None, "errmsg": None}
        twice = http.post(api + "/welcome", headers=owner,
                          json={"welcome_code": "WELCOME-2", "text": "欢迎！"}).json()  # fmt: skip
        assert twice["status"] == "duplicate" and twice["reason"] == "welcome_code_already_used"
        assert len(fake.welcomes) == 2
        fake.used_welcome_codes.add("USED-ELSEWHERE")
        used = http.post(api + "/welcome", headers=owner,
                         json={"welcome_code": "USED-ELSEWHERE", "text": "hi"}).json()  # fmt: skip
        assert used["status"] == "failed" and used["errcode"] == 41051
        assert used["reason"] == "welcome_code_used_or_expired"
        # Past the 20-second window: not even tried at WeCom.
        late_xml = contact_event("add_external_contact", external="wmLate", welcome_code="LATE-1",
                                 create_time=now + 20)  # fmt: skip
        post_callback(http, callback, seal(late_xml, timestamp=now))
        with runtime.read_sessions() as session:
            late_follow = session.get(WecomFollow, (ws, "wmLate", "zhangsan"))
            assert late_follow is not None
            added_at = late_follow.added_at
        late = service.send_welcome_msg(runtime, ws, "LATE-1", "hi",
                                        now=added_at + timedelta(seconds=21))  # fmt: skip
        assert late.status == "expired" and late.reason == "welcome_window_passed"
        assert "LATE-1" not in fake.used_welcome_codes

        # Mass send: staff confirm; the monthly cap leaves a customer out with a reason.
        for n in range(4):
            out = http.post(
                api + "/mass-sends",
                headers=owner,
                json={
                    "idempotency_key": f"k{n}",
                    "external_userids": ["wmCust1"],
                    "text": f"福利 {n}",
                },
            )
            assert out.status_code == 200 and out.json()["status"] == "created", out.text
        repeat = http.post(
            api + "/mass-sends",
            headers=owner,
            json={"idempotency_key": "k0", "external_userids": ["wmCust1"], "text": "福利 0"},
        ).json()
        assert repeat["status"] == "created" and len(fake.templates) == 4
        capped = http.post(
            api + "/mass-sends",
            headers=owner,
            json={"idempotency_key": "k5", "external_userids": ["wmCust1", "wmC2"], "text": "x"},
        ).json()
        assert capped["status"] == "created" and capped["recipients"] == ["wmC2"]
        assert capped["over_cap"] == ["wmCust1"]
        refused = http.post(
            api + "/mass-sends",
            headers=owner,
            json={"idempotency_key": "k6", "external_userids": ["wmCust1"], "text": "x"},
        ).json()
        assert refused["status"] == "refused" and refused["reason"] == "monthly_cap"
        assert fake.received == {"wmCust1": 4, "wmC2": 1}
        receipts = http.get(api + "/receipts", headers=owner,
                            params={"external_userid": ["wmCust1", "wmC2", "wmNew"]}).json()  # fmt: skip
        assert [(i["received"], i["remaining"]) for i in receipts["items"]] == [
            (4, 0),
            (1, 3),
            (0, 4),
        ]
