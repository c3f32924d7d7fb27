"""The channels API in one flow: configure (secrets never returned), send and replay, test
send, quiet-hours settings, opt-out by API and by the signed unsubscribe page, the staff task
inbox confirming a personal-WeChat send, and the 4xx answers."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from channel_fakes import contact, serve, webhook_receiver

from testkit import make_key


# HTTP shapes and roles: SQLite is enough (storage behaviour is tested on both in test_send).
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_channels_api_flow(client: Any, runtime: Any, owner: dict[str, str]) -> None:
    ws = client.get("/api/v1/workspace", headers=owner).json()["id"]
    _, operator = make_key(runtime, "operator", ws)
    # Quiet hours off for this flow (a marketing send at night would be deferred).
    r = client.put(
        "/api/v1/channel-settings",
        headers=owner,
        json={"quiet_enabled": False, "quiet_start": "22:00", "quiet_end": "08:00"},
    )
    assert r.status_code == 200, r.text
    assert r.json() == {
        "quiet_enabled": False,
        "quiet_start": "22:00",
        "quiet_end": "08:00",
        "timezone": "Asia/Shanghai",
    }
    assert client.put("/api/v1/channel-settings", headers=operator, json={}).status_code == 403
    assert (
        client.put(
            "/api/v1/channel-settings", headers=owner, json={"quiet_start": "9pm"}
        ).status_code
        == 422
    )
    contact(runtime, ws, "alice")
    secret: list[str] = []
    with serve(webhook_receiver(lambda: secret[0] if secret else None), "/hook") as receiver:
        r = client.post(
            "/api/v1/channels",
            headers=owner,
            json={
                "kind": "webhook",
                "name": "CRM",
                "config": {"url": receiver.url},
                "cap_count": 2,
            },
        )
        assert r.status_code == 201, r.text
        created = r.json()
        assert created["secret"].startswith("whsec_") and created["has_secret"]
        secret.append(created["secret"])
        chn = created["id"]
        listed = client.get("/api/v1/channels", headers=operator).json()["items"]
        assert [c["id"] for c in listed] == [chn] and "secret" not in listed[0]
        assert created["secret"] not in client.get(f"/api/v1/channels/{chn}", headers=owner).text
        # Operators use channels; only admins configure them.
        assert (
            client.post(
                "/api/v1/channels",
                headers=operator,
                json={"kind": "webhook", "name": "x", "config": {}},
            ).status_code
            == 403
        )
        send = {"contact_id": "alice", "content": {"text": "欢迎"}, "idempotency_key": "k1"}
        first = client.post(f"/api/v1/channels/{chn}/send", headers=operator, json=send).json()
        assert first.get("status") == "sent" and not first["replayed"], first
        again = client.post(f"/api/v1/channels/{chn}/send", headers=operator, json=send).json()
        assert again["status"] == "sent" and again["replayed"] and len(receiver.accepted) == 1
        # The frequency cap (2 a day): the third marketing message is suppressed.
        for key in ("k2", "k3"):
            out = client.post(
                f"/api/v1/channels/{chn}/send",
                headers=operator,
                json={**send, "idempotency_key": key},
            ).json()
        assert out["status"] == "suppressed" and out["reason"] == "frequency_cap"
        assert out["deferred_until"] is not None and len(receiver.accepted) == 2
        test = client.post(f"/api/v1/channels/{chn}/test", headers=operator, json={}).json()
        assert test["status"] == "sent" and len(receiver.accepted) == 3
        sends = client.get(f"/api/v1/channels/{chn}/sends", headers=operator).json()["items"]
        assert [s["status"] for s in sends] == ["sent", "suppressed", "sent", "sent"]
        # A delivery report forwarded later: the bounce is recorded and becomes an event.
        r = client.post(f"/api/v1/channels/{chn}/receipts", headers=operator,
                        json={"idempotency_key": "k1", "result": "bounced",
                              "detail": "550 mailbox unavailable"})  # fmt: skip
        assert r.status_code == 200 and r.json()["reason"] == "bounced", r.text
        r = client.post(f"/api/v1/channels/{chn}/receipts", headers=operator,
                        json={"idempotency_key": "k3", "result": "delivered"})  # fmt: skip
        assert r.status_code == 409  # k3 was suppressed: nothing was handed over
        r = client.post(f"/api/v1/channels/{chn}/receipts", headers=operator,
                        json={"idempotency_key": "nope", "result": "delivered"})  # fmt: skip
        assert r.status_code == 404
        # Unsubscribe through the signed link the message carried.
        link = receiver.accepted["k1"]["unsubscribe_url"]
        path = link.removeprefix("http://sho.rt")
        page = client.get(path)
        assert page.status_code == 200 and "确认退订" in page.text
        assert "script-src 'none'" in page.headers["content-security-policy"]
        bad = client.get(path[:-3] + "AAA")
        assert bad.status_code == 404 and "链接无效" in bad.text
        assert "已退订" in client.post(path).text
        out = client.post(
            f"/api/v1/channels/{chn}/send", headers=operator, json={**send, "idempotency_key": "k4"}
        ).json()
        assert out["status"] == "suppressed" and out["reason"] == "opted_out"
        opt = client.get("/api/v1/channel-opt-outs?contact_id=alice", headers=operator).json()
        assert [(o["channel_id"], o["via"]) for o in opt["items"]] == [(chn, "link")]
        assert (
            client.delete(
                f"/api/v1/channel-opt-outs?contact_id=alice&channel_id={chn}", headers=operator
            ).status_code
            == 204
        )
        assert (
            client.post(
                "/api/v1/channel-opt-outs",
                headers=operator,
                json={"contact_id": "alice", "channel_id": "*"},
            ).status_code
            == 201
        )
        # Transactional messages still go to an opted-out person (and skip the cap).
        out = client.post(
            f"/api/v1/channels/{chn}/send",
            headers=operator,
            json={**send, "idempotency_key": "k5", "category": "transactional"},
        ).json()
        assert out["status"] == "sent"
        r = client.post(f"/api/v1/channels/{chn}/disable", headers=owner)
        assert r.json()["active"] is False
        out = client.post(
            f"/api/v1/channels/{chn}/send", headers=operator, json={**send, "idempotency_key": "k6"}
        ).json()
        assert out["status"] == "suppressed" and out["reason"] == "channel_disabled"
    # Bad input: a clear 4xx, nothing written.
    for body, code in [
        ({"kind": "fax", "name": "x", "config": {}}, "unknown_channel_kind"),
        ({"kind": "smtp", "name": "x", "config": {"host": "smtp.example.com"}}, "invalid_channel"),
        (
            {
                "kind": "wecom_robot",
                "name": "x",
                "config": {"url": "https://qyapi.weixin.qq.com/cgi-bin/webhook/send"},
            },
            "invalid_channel",
        ),
    ]:
        r = client.post("/api/v1/channels", headers=owner, json=body)
        assert r.status_code == 422 and r.json()["error"]["code"] == code, r.text
    assert (
        client.post(
            "/api/v1/channels", headers=owner, json={"kind": "sms", "name": "x", "surprise": 1}
        ).status_code
        == 422
    )
    # A personal-WeChat channel: a person sends it; the task inbox confirms it.
    r = client.post(
        "/api/v1/channels",
        headers=owner,
        json={"kind": "personal_wechat", "name": "顾问微信", "config": {"assignee": "小王"}},
    )
    wx = r.json()["id"]
    out = client.post(
        f"/api/v1/channels/{wx}/send",
        headers=operator,
        json={
            "contact_id": "alice",
            "content": {"text": "您好，我是您的顾问"},
            "idempotency_key": "wx1",
            "category": "transactional",
        },
    ).json()
    assert out["status"] == "pending_staff" and out["task_id"].startswith("tsk_")
    inbox = client.get("/api/v1/staff-tasks", headers=operator).json()["items"]
    assert [(t["id"], t["assignee"], t["body"]) for t in inbox] == [
        (out["task_id"], "小王", "您好，我是您的顾问")
    ]
    done = client.post(
        f"/api/v1/staff-tasks/{out['task_id']}/done", headers=operator, json={"done_by": "小王"}
    ).json()
    assert done["status"] == "done"
    sends = client.get(f"/api/v1/channels/{wx}/sends", headers=operator).json()["items"]
    assert sends[0]["status"] == "sent"
    assert client.get("/api/v1/staff-tasks", headers=operator).json()["items"] == []
    manual = client.post(
        "/api/v1/staff-tasks",
        headers=operator,
        json={"title": "第6天 1对1 回访", "contact_id": "alice", "dedupe_key": "run1:day6"},
    ).json()
    twice = client.post(
        "/api/v1/staff-tasks",
        headers=operator,
        json={"title": "第6天 1对1 回访", "dedupe_key": "run1:day6"},
    ).json()
    assert manual["id"] == twice["id"]
    assert client.post("/api/v1/staff-tasks", headers=operator, json={}).status_code == 422
