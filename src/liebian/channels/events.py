"""Delivery results as events in the event store (through the spool, after the commit).

=====================  ==============================================  ====================
event                  when                                            event_id
=====================  ==============================================  ====================
message_sent           the receiver accepted it (or staff confirmed)   chs:sent:<send id>
message_failed         an attempt failed (``retryable`` says if final) chs:failed:<id>:<n>
message_suppressed     a guard stopped it (``reason``)                 chs:suppressed:<id>
message_deferred       quiet hours: it waits (``deferred_until``)      chs:deferred:<id>
message_pending_staff  a staff task was created for it                 chs:pending:<id>
message_confirmed      staff marked the task done                      chs:confirmed:<id>
message_delivered      a receipt: the provider delivered it            chs:delivered:<id>
message_bounced        a receipt: bounced / undeliverable (``detail``) chs:bounced:<id>
=====================  ==============================================  ====================

``user_id`` is the contact's external id (None for group / endpoint channels); properties carry
``channel_id``, ``channel`` (the kind), ``source``, ``category``, ``idempotency_key``,
``send_id`` and ``reason``. The event ids are derived from the record, so a replay is stored once.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from liebian.channels.models import Channel, ChannelSend
from liebian.events import sink as event_sink
from liebian.events.spool import Spool
from liebian.kit.db import after_commit

EVENT_IDS = {
    "message_sent": "chs:sent:{id}",
    "message_failed": "chs:failed:{id}:{attempt}",
    "message_suppressed": "chs:suppressed:{id}",
    "message_deferred": "chs:deferred:{id}",
    "message_pending_staff": "chs:pending:{id}",
    "message_confirmed": "chs:confirmed:{id}",
    "message_delivered": "chs:delivered:{id}",
    "message_bounced": "chs:bounced:{id}",
}


def line(
    event: str, record: ChannelSend, channel_kind: str, external_id: str | None, **extra: Any
) -> bytes:
    now = datetime.now(UTC)
    props: dict[str, Any] = {
        "send_id": record.id, "channel_id": record.channel_id, "channel": channel_kind,
        "source": record.source, "category": record.category,
        "idempotency_key": record.idempotency_key,
    }  # fmt: skip
    if record.reason:
        props["reason"] = record.reason
    if record.provider_message_id:
        props["provider_message_id"] = record.provider_message_id
    props.update({k: v for k, v in extra.items() if v is not None})
    return event_sink.event_line(
        workspace_id=record.workspace_id,
        event_id=EVENT_IDS[event].format(id=record.id, attempt=record.attempts),
        event=event, ts=now, user_id=external_id, properties=props,
    )  # fmt: skip


def emit(
    session: Session,
    spool: Spool | None,
    event: str,
    record: ChannelSend,
    channel: Channel | str,
    external_id: str | None,
    **extra: Any,
) -> None:
    """Append the event once the session commits (never for a rolled-back change)."""
    if spool is None:
        return
    kind = channel if isinstance(channel, str) else channel.kind
    data = line(event, record, kind, external_id, **extra)
    after_commit(session, lambda: spool.append_line(data))
