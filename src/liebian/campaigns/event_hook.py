"""Conversions reach the fission engine from event ingestion.

``POST /api/v1/events`` spools every accepted event; for the conversion events a campaign cares
about (purchase/order_paid, refund, signup, join_group, leave_group/unfollow — see
``conversions.CONVERSION_EVENTS``) this hook then applies them to campaigns, rewards and
commissions in one OLTP transaction. ``apply_conversion`` is idempotent per event_id, so a client
retrying a batch never pays twice.

A conversion the fission rules refuse (say, an order above their sanity limit) is logged and
skipped: the event itself is already stored and acknowledged, and failing the whole request
would make the client resend events that were accepted.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from sqlalchemy.orm import Session, sessionmaker

from liebian.campaigns.conversions import CONVERSION_EVENTS, apply_conversion
from liebian.events.schemas import EventIn
from liebian.kit.clock import utcnow
from liebian.kit.db import session_scope
from liebian.kit.errors import DomainError

log = logging.getLogger("liebian.campaigns")


class ConversionHook:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    def select(self, events: Sequence[EventIn]) -> list[EventIn]:
        return [e for e in events if e["event"] in CONVERSION_EVENTS and e.get("user_id")]

    def __call__(self, workspace_id: str, events: Sequence[EventIn]) -> None:
        now = utcnow()
        with session_scope(self.sessions) as session:
            for event in events:
                user_id, event_id = event.get("user_id"), event.get("event_id")
                assert user_id is not None and event_id is not None
                try:
                    with session.begin_nested():
                        apply_conversion(
                            session,
                            workspace_id,
                            user_id=user_id,
                            event=event["event"],
                            event_id=event_id,
                            revenue=event.get("revenue"),
                            currency=event.get("currency"),
                            ts=event.get("ts") or now,
                            properties=event.get("properties"),
                        )
                except DomainError as exc:
                    log.warning(
                        "conversion %s (%s) not applied to campaigns: %s",
                        event_id,
                        event["event"],
                        exc.message,
                    )


def conversion_hook(sessions: sessionmaker[Session]) -> ConversionHook:
    return ConversionHook(sessions)
