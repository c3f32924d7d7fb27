"""Welcomes on join through a configured channel (a signed webhook to a receiver on loopback),
announcements once per key, and WeCom's welcome code for a customer added through a 联系我 way
whose state is the community (callback → bus → place → send_welcome_msg at the loopback fake)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "connectors"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "webhooks"))

from receiver import receiver
from wecom_fake import (
    AES_KEY,
    CORP_ID,
    SECRET,
    TOKEN,
    contact_event,
    fake_wecom,
    post_callback,
    seal,
)

from liebian.channels.models import ChannelSend
from liebian.contacts import service as contacts
from liebian.kit.db import session_scope


def test_welcome_announcement_and_wecom_welcome(
    client: Any, owner: dict[str, str], runtime: Any, settings: Any
) -> None:
    h = owner
    ws = client.get("/api/v1/workspace", headers=h).json()["id"]
    with session_scope(runtime.sessions) as session:
        contacts.upsert(
            session, runtime.cipher, ws, contacts.ContactInput("mom-1", nickname="小美")
        )
    with receiver() as hook, fake_wecom() as fake:
        settings.wecom_api_base = fake.url
        chn = client.post(
            "/api/v1/channels",
            headers=h,
            json={"kind": "webhook", "name": "欢迎语", "config": {"url": hook.url}},
        )
        assert chn.status_code == 201, chn.text
        bad = client.post(
            "/api/v1/communities", headers=h, json={"name": "x", "welcome_template": "{{ oops "}
        )
        assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_template"
        bad = client.post(
            "/api/v1/communities", headers=h, json={"name": "x", "channel_id": "chn_nope"}
        )
        assert bad.status_code == 422 and bad.json()["error"]["code"] == "channel_not_found"
        cmy = client.post("/api/v1/communities", headers=h, json={
            "name": "宝妈交流群", "channel_id": chn.json()["id"],
            "welcome_template": "{{ contact.nickname }}，欢迎加入{{ group.name }}！入群链接：{{ group.join_url }} 邀请码 {{ member.invite_code }}",
            "announcement_template": "【群公告】{{ group.name }} 禁止广告"}).json()  # fmt: skip
        grp = client.post(f"/api/v1/communities/{cmy['id']}/groups", headers=h,
                          json={"name": "1 群", "join_url": "https://work.weixin.qq.com/gm/abc"}).json()  # fmt: skip

        preview = client.post(
            f"/api/v1/communities/{cmy['id']}/welcome-preview",
            headers=h,
            json={"external_id": "mom-1"},
        )
        assert preview.json()["text"].startswith("小美，欢迎加入示例群")

        joined = client.post(
            f"/api/v1/community-groups/{grp['id']}/members",
            headers=h,
            json={"external_id": "mom-1"},
        )
        assert joined.status_code == 200
        assert hook.wait_for(lambda reqs: len(reqs) >= 1)
        first = hook.requests[0].body.decode()
        assert "小美，欢迎加入1 群！入群链接：https://work.weixin.qq.com/gm/abc" in first
        assert joined.json()["invite_code"] in first
        # The same join reported again: no second welcome.
        client.post(
            f"/api/v1/community-groups/{grp['id']}/members",
            headers=h,
            json={"external_id": "mom-1"},
        )

        for _ in range(2):
            sent = client.post(
                f"/api/v1/community-groups/{grp['id']}/announcement",
                headers=h,
                json={"idempotency_key": "2026-12-02"},
            )
            assert sent.status_code == 200 and sent.json()["status"] == "sent", sent.text
        assert hook.wait_for(lambda reqs: len(reqs) >= 2)
        assert "【群公告】1 群 禁止广告" in hook.requests[1].body.decode()

        # WeCom: a customer adds the owner through a way whose state is the community.
        conn = client.put("/api/v1/connectors/wecom", headers=h, json={
            "corp_id": CORP_ID, "agent_secret": SECRET, "token": TOKEN, "encoding_aes_key": AES_KEY}).json()  # fmt: skip
        now = int(time.time())
        xml = contact_event(
            "add_external_contact",
            external="wmMomW",
            state=cmy["id"],
            welcome_code="WC-1",
            create_time=now,
        )
        assert (
            post_callback(
                client, "/api/v1/connectors/wecom/callback/" + conn["id"], seal(xml, timestamp=now)
            ).status_code
            == 200
        )
        deadline = time.monotonic() + 20
        while not fake.welcomes and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(fake.welcomes) == 1 and fake.welcomes[0]["welcome_code"] == "WC-1"
        assert (
            "朋友，欢迎加入1 群！入群链接：https://work.weixin.qq.com/gm/abc"
            in fake.welcomes[0]["text"]["content"]
        )
        members = client.get(f"/api/v1/communities/{cmy['id']}/members", headers=h).json()["items"]
        assert sorted(m["scene"] for m in members) == ["api", "wecom"]
        assert hook.wait_for(
            lambda reqs: len(reqs) >= 3
        )  # the WeCom member's join: the channel's welcome too
    with runtime.read_sessions() as session:
        assert (
            session.scalar(
                select(func.count())
                .select_from(ChannelSend)
                .where(ChannelSend.idempotency_key.like("cmw:%"))
            )
            == 2
        )
        assert (
            session.scalar(
                select(func.count())
                .select_from(ChannelSend)
                .where(ChannelSend.idempotency_key.like("cma:%"))
            )
            == 1
        )
