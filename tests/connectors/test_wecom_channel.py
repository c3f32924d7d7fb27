"""The ``wecom_customer`` channel kind: channels.service.send → the connector's mass send →
the loopback WeCom; once per key, the monthly cap, a contact without a WeCom id."""

from __future__ import annotations

import time
from typing import Any

import pytest
from wecom_fake import AES_KEY, CORP_ID, SECRET, TOKEN, contact_event, fake_wecom, seal

from liebian.app.runtime import Runtime
from liebian.channels.base import OutboundMessage
from liebian.channels.config import ChannelInput, create_channel, set_guard_settings
from liebian.channels.service import SendRequest, adapter_context, send
from liebian.channels.wecom_customer import WecomCustomerAdapter
from liebian.connectors.wecom import service
from liebian.connectors.wecom.callbacks import TOPIC_CONTACT_ADDED
from liebian.contacts.service import ContactInput, upsert
from liebian.kit.auth import Principal, Role
from liebian.kit.db import session_scope
from liebian.workspaces.service import create_workspace


def test_wecom_customer_channel_sends_through_the_connector(runtime: Runtime) -> None:
    added: list[Any] = []
    runtime.bus.subscribe(TOPIC_CONTACT_ADDED, added.append)
    with fake_wecom() as fake:
        runtime.settings.wecom_api_base = fake.url
        with session_scope(runtime.sessions) as session:
            ws = create_workspace(session, "企微渠道").id
            conn = service.connect(session, Principal(ws, Role.owner), runtime.cipher,
                                   service.ConnectionInput(CORP_ID, SECRET, TOKEN, AES_KEY))  # fmt: skip
            conn_id = conn.id
            set_guard_settings(session, ws, enabled=False, start="21:00", end="09:00")
            chn, _ = create_channel(session, runtime, ws, ChannelInput(
                kind="wecom_customer", name="企微客户", config={"sender": "zhangsan"}))  # fmt: skip
            chn_id = chn.id
            stranger = upsert(session, runtime.cipher, ws, ContactInput(external_id="u-none")).id
        now = int(time.time())
        env = seal(contact_event("add_external_contact", external="wmCh", create_time=now),
                   timestamp=now)  # fmt: skip
        service.receive_callback(runtime, conn_id, env.body, **env.params)
        contact_id = added[0]["contact_id"]

        def go(key: str, who: str = contact_id) -> Any:
            with runtime.sessions() as session:
                return send(session, runtime, SendRequest(
                    workspace_id=ws, channel_id=chn_id, contact_id=who,
                    content={"text": "本周福利"}, idempotency_key=key, source="journey"))  # fmt: skip

        first = go("run_1:step_1")
        assert first.status == "sent" and first.provider_message_id
        assert fake.templates[-1]["external_userid"] == ["wmCh"]
        assert fake.templates[-1]["sender"] == "zhangsan"
        again = go("run_1:step_1")
        assert again.replayed and again.status == "sent" and len(fake.templates) == 1
        # The adapter's lookup (crash recovery) finds the recorded task by the key.
        adapter = WecomCustomerAdapter("zhangsan", adapter_context(runtime))
        message = OutboundMessage(send_id=first.send_id, workspace_id=ws, channel_id=chn_id,
                                  idempotency_key="run_1:step_1", content={"text": "x"},
                                  category="marketing", contact_id=contact_id)  # fmt: skip
        found = adapter.lookup(message)
        assert found is not None and found.delivered
        assert found.provider_message_id == first.provider_message_id
        assert (
            adapter.lookup(OutboundMessage(**{**message.__dict__, "idempotency_key": "nope"}))
            is None
        )

        # No WeCom id: a clear failure, nothing at WeCom.
        none = go("run_2:step_1", stranger)
        assert none.status == "failed" and none.reason == "no_address"
        assert len(fake.templates) == 1

        # WeCom's 4 a month: the 5th is suppressed by the channel's cap, never sent.
        for n in range(2, 5):
            assert go(f"run_1:step_{n}").status == "sent"
        fifth = go("run_1:step_5")
        assert fifth.status == "suppressed" and fifth.reason == "monthly_cap"
        assert fake.received == {"wmCh": 4}

    # WeCom gone: a welcome is "unknown" (maybe sent) and its single-use code never retried.
    lost = service.send_welcome_msg(runtime, ws, "LOST-1", "hi")
    assert lost.status == "unknown" and lost.reason == "wecom_unavailable"
    assert service.send_welcome_msg(runtime, ws, "LOST-1", "hi").status == "duplicate"

    with pytest.raises(Exception) as bad:
        WecomCustomerAdapter.check_content({"text": "hi", "image_url": "x"})
    assert getattr(bad.value, "status", None) == 422
