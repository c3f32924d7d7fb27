"""Conversions from the event pipeline into campaigns.

``POST /api/v1/events`` calls :func:`apply_conversion` synchronously for these event names:

- ``signup`` — qualifies pending invites whose campaign's qualifying action is ``signup``;
- ``join_group`` — qualifies invites/posters whose qualifying action is ``join_group``;
- ``purchase`` / ``order_paid`` (same meaning) — qualifies ``first_purchase`` invites and
  writes distribution commission on ``revenue`` (integer 分) for ``properties.order_id``
  (the event id when absent);
- ``refund`` — ``revenue`` is the refunded amount (0/absent = the whole order) of
  ``properties.order_id``; commission is recalculated or reversed, and invite rewards that the
  order qualified are reversed while still unpaid;
- ``leave_group`` / ``unfollow`` — the invitee left: their invites stop counting.

Idempotent per ``event_id``: the conversion row is inserted with ON CONFLICT DO NOTHING and
nothing else happens when it was already there, so replays and retries change nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from liebian.campaigns import distribution, referrals, service
from liebian.campaigns.models import Campaign, Conversion, Referral
from liebian.contacts import service as contacts
from liebian.contacts.repository import insert_ignore
from liebian.kit.clock import as_utc, utcnow
from liebian.kit.errors import Invalid
from liebian.kit.ids import new_id
from liebian.rewards import service as ledger
from liebian.rewards.models import RewardEntry

CONVERSION_EVENTS = frozenset(
    {"purchase", "order_paid", "refund", "signup", "join_group", "leave_group", "unfollow"}
)
_ALIASES = {"order_paid": "purchase", "unfollow": "leave_group"}
MAX_REVENUE = 100_000_000  # ¥1,000,000 per order in 分; anything above is a unit mistake


def apply_conversion(
    session: Session,
    workspace_id: str,
    *,
    user_id: str,
    event: str,
    event_id: str,
    revenue: int | None,
    currency: str | None,
    ts: datetime,
    properties: Mapping[str, Any] | None,
) -> None:
    if event not in CONVERSION_EVENTS:
        return
    name = _ALIASES.get(event, event)
    amount = int(revenue or 0)
    if not 0 <= amount <= MAX_REVENUE:
        raise Invalid(
            f"revenue must be between 0 and {MAX_REVENUE} (integer 分)",
            code="invalid_revenue",
            details={"field": "revenue"},
        )
    props = dict(properties or {})
    order_id = str(props.get("order_id") or event_id)[:128]
    ts = as_utc(ts)
    # Conversions carry no PII, so no cipher is needed to find or create the contact.
    contact = contacts.upsert(
        session, None, workspace_id, contacts.ContactInput(external_id=user_id)
    )
    if name == "refund" and amount == 0:
        # A refund without an amount refunds whatever is left of the order.
        amount = max(
            0,
            distribution._order_total(session, workspace_id, order_id, "purchase")
            - distribution._order_total(session, workspace_id, order_id, "refund"),
        )
    first_purchase = name == "purchase" and not _has_purchase(session, contact.id)
    inserted = insert_ignore(
        session,
        Conversion.__table__,
        {
            "id": new_id("cnv"), "workspace_id": workspace_id, "event_id": event_id[:128],
            "contact_id": contact.id, "event": name, "order_id": order_id, "revenue": amount,
            "currency": (currency or "CNY").upper()[:3], "ts": ts, "created_at": utcnow(),
        },
        ["workspace_id", "event_id"],
    )  # fmt: skip
    if not inserted:
        return  # replay of an event already applied
    if name == "purchase":
        distribution.on_purchase(
            session, workspace_id, contact.id, order_id=order_id, revenue=amount,
            currency=(currency or "CNY").upper()[:3], ts=ts,
        )  # fmt: skip
        if first_purchase:
            _qualify(session, workspace_id, contact.id, "first_purchase", ts, order_id=order_id)
    elif name == "refund":
        distribution.on_refund(session, workspace_id, order_id=order_id, event_id=event_id)
        _reverse_invite_rewards_of_order(session, workspace_id, order_id, event_id)
    elif name in ("signup", "join_group"):
        _qualify(session, workspace_id, contact.id, name, ts)
    elif name == "leave_group":
        _invalidate(session, workspace_id, contact.id, ts)


def _has_purchase(session: Session, contact_id: str) -> bool:
    return (
        session.scalars(
            select(Conversion.id)
            .where(Conversion.contact_id == contact_id, Conversion.event == "purchase")
            .limit(1)
        ).first()
        is not None
    )


def _referee_referrals(
    session: Session, workspace_id: str, contact_id: str
) -> list[tuple[Referral, Campaign]]:
    rows = session.execute(
        select(Referral, Campaign)
        .join(Campaign, Campaign.id == Referral.campaign_id)
        .where(
            Referral.workspace_id == workspace_id,
            Referral.referee_contact_id == contact_id,
            Referral.status != "superseded",
            Campaign.type.in_(("invite", "poster")),
        )
    ).all()
    return [(r, c) for r, c in rows]


def _qualify(
    session: Session,
    workspace_id: str,
    contact_id: str,
    action: str,
    ts: datetime,
    *,
    order_id: str | None = None,
) -> None:
    for referral, campaign in _referee_referrals(session, workspace_id, contact_id):
        if referral.qualified_at is not None:
            continue
        wanted = referrals.qualifying_action(service.config_of(campaign))
        if wanted == action:
            referrals.qualify(session, campaign, referral, ts, order_id=order_id)


def _invalidate(session: Session, workspace_id: str, contact_id: str, ts: datetime) -> None:
    for referral, campaign in _referee_referrals(session, workspace_id, contact_id):
        if getattr(service.config_of(campaign), "invalid_on_leave", True):
            referrals.invalidate(session, referral, ts, reason="invitee left")


def _reverse_invite_rewards_of_order(
    session: Session, workspace_id: str, order_id: str, event_id: str
) -> None:
    """A refunded first purchase no longer qualifies its invite: unpaid rewards go back."""
    entries = session.scalars(
        select(RewardEntry).where(
            RewardEntry.workspace_id == workspace_id,
            RewardEntry.order_id == order_id,
            RewardEntry.reason.in_(("tier", "invitee")),
            RewardEntry.status.in_(("pending", "approved")),
        )
    )
    for entry in list(entries):
        ledger.transition(session, workspace_id, entry.id, "reverse", reason=f"refund {event_id}")
