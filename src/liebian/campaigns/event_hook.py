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
from collections.abc import Callable, Sequence

from sqlalchemy.orm import Session, sessionmaker

from liebian.campaigns.conversions import CONVERSION_EVENTS, apply_conversion
from liebian.events.schemas import EventIn
from liebian.kit.clock import utcnow
from liebian.kit.db import session_scope
from liebian.kit.errors import DomainError

log = logging.getLogger("liebian.campaigns")


def conversion_hook(sessions: sessionmaker[Session]) -> Callable[[str, Sequence[EventIn]], None]:
    def apply(workspace_id: str, events: Sequence[EventIn]) -> None:
        relevant = [e for e in events if e.event in CONVERSION_EVENTS and e.user_id]
        if not relevant:
            return
        now = utcnow()
        with session_scope(sessions) as session:
            for event in relevant:
                assert event.user_id is not None and event.event_id is not None
                try:
                    with session.begin_nested():
                        apply_conversion(
                            session,
                            workspace_id,
                            user_id=event.user_id,
                            event=event.event,
                            event_id=event.event_id,
                            revenue=event.revenue,
                            currency=event.currency,
                            ts=event.ts or now,
                            properties=event.properties,
                        )
                except DomainError as exc:
                    log.warning(
                        "conversion %s (%s) not applied to campaigns: %s",
                        event.event_id,
                        event.event,
                        exc.message,
                    )

    return apply
