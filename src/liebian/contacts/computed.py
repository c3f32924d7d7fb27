"""Computed attributes of a contact: first/last seen and touch channel, orders, GMV, last
order, invites made/qualified, source campaign and inviter, an RFM class.

Kept current two ways:
- live: a conversion applied by ``campaigns.conversions`` (exactly once per event id, thanks
  to its unique key) calls ``on_conversion``; identify and events carrying ids call ``touch``;
- reconciled: ``reconcile`` recomputes every contact of a workspace from the event store in
  the engine's SQL (DuckDB or ClickHouse: one GROUP BY per person over the events joined to
  the identity map) and from the referrals table, and writes what differs. The scheduler runs
  it every ``people_interval`` seconds; merges the event store could not re-key at the time
  are re-applied first.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session

from liebian.analytics.sql import Sql
from liebian.contacts.models import Contact
from liebian.contacts.references import table
from liebian.events.store.base import EventStore

log = logging.getLogger("liebian.contacts")

PURCHASES = ("purchase", "order_paid")
# RFM: recent = ordered in the last 30 days; frequent = 2+ orders; valuable = GMV ≥ ¥500.
RECENT_DAYS = 30
FREQUENT_ORDERS = 2
VALUABLE_CENTS = 50_000
_RFM = {
    (True, True, True): "重要价值",
    (False, True, True): "重要保持",
    (True, False, True): "重要发展",
    (False, False, True): "重要挽留",
    (True, True, False): "一般价值",
    (False, True, False): "一般保持",
    (True, False, False): "一般发展",
    (False, False, False): "一般挽留",
}


def rfm_class(
    orders: int, gmv_cents: int, last_order_at: datetime | None, now: datetime
) -> str | None:
    if orders <= 0 or last_order_at is None:
        return None
    recent = now - last_order_at <= timedelta(days=RECENT_DAYS)
    return _RFM[(recent, orders >= FREQUENT_ORDERS, gmv_cents >= VALUABLE_CENTS)]


@dataclass(slots=True)
class Figures:
    """A contact's computed columns outside the ORM (the set-based event hook replays a
    batch's events over these, contacts/people_hook.py); same names as on ``Contact``."""

    first_seen_at: datetime | None = None
    last_seen_at: datetime | None = None
    first_channel: str | None = None
    last_channel: str | None = None
    orders_count: int = 0
    gmv_cents: int = 0
    last_order_at: datetime | None = None
    rfm_class: str | None = None


def touch(contact: Contact | Figures, ts: datetime, channel: str | None = None) -> None:
    """The person was active at ``ts`` (through ``channel`` when known)."""
    if contact.first_seen_at is None or ts < contact.first_seen_at:
        contact.first_seen_at = ts
        if channel:
            contact.first_channel = channel[:64]
    elif channel and contact.first_channel is None:
        contact.first_channel = channel[:64]
    if contact.last_seen_at is None or ts >= contact.last_seen_at:
        contact.last_seen_at = ts
        if channel:
            contact.last_channel = channel[:64]


def on_conversion(
    contact: Contact | Figures, name: str, amount: int, ts: datetime, now: datetime
) -> None:
    """A conversion newly applied (never a replay: the caller's unique key saw to that)."""
    touch(contact, ts)
    if name == "purchase":
        contact.orders_count = (contact.orders_count or 0) + 1
        contact.gmv_cents = (contact.gmv_cents or 0) + amount
        if contact.last_order_at is None or ts > contact.last_order_at:
            contact.last_order_at = ts
    elif name == "refund":
        contact.gmv_cents = max(0, (contact.gmv_cents or 0) - amount)
    contact.rfm_class = rfm_class(
        contact.orders_count, contact.gmv_cents, contact.last_order_at, now
    )


# -- reconciliation from the event store -----------------------------------------------------


def _event_figures(store: EventStore, workspace_id: str) -> list[tuple[Any, ...]]:
    """Per person: first/last seen, first/last channel, orders, GMV (purchases − refunds),
    last order — computed inside the engine."""
    sql = Sql(store)
    person = sql.person()
    purchase = "e.event IN ('purchase', 'order_paid')"
    refund = "e.event = 'refund'"
    has_channel = "coalesce(e.channel, '') <> ''"
    if sql.ch:
        select_ = (
            f"{person} AS person, min(e.ts), max(e.ts),"
            f" argMinIf(e.channel, e.ts, {has_channel}), argMaxIf(e.channel, e.ts, {has_channel}),"
            f" countIf({purchase}), sumIf(e.revenue, {purchase}) - sumIf(e.revenue, {refund}),"
            f" maxIf(e.ts, {purchase}), countIf({purchase}) > 0"
        )
    else:
        select_ = (
            f"{person} AS person, min(e.ts), max(e.ts),"
            f" arg_min(e.channel, e.ts) FILTER (WHERE {has_channel}),"
            f" arg_max(e.channel, e.ts) FILTER (WHERE {has_channel}),"
            f" count(*) FILTER (WHERE {purchase}),"
            f" coalesce(sum(e.revenue) FILTER (WHERE {purchase}), 0)"
            f" - coalesce(sum(e.revenue) FILTER (WHERE {refund}), 0),"
            f" max(e.ts) FILTER (WHERE {purchase}), count(*) FILTER (WHERE {purchase}) > 0"
        )
    query = sql.events_with_person(workspace_id, select_) + " GROUP BY person"
    return sql.run(query)


def _aware(value: Any) -> datetime | None:
    if value is None or value == "" or str(value).startswith("1970-01-01"):
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def reconcile(session: Session, store: EventStore, workspace_id: str, now: datetime) -> int:
    """Recompute every contact's computed attributes; returns how many contacts changed."""
    reapply_merges(session, store, workspace_id)
    figures: dict[str, tuple[Any, ...]] = {
        str(r[0]): r for r in _event_figures(store, workspace_id)
    }
    invites = _invites(session, workspace_id)
    sources = _sources(session, workspace_id)
    changed = 0
    contacts = session.scalars(
        select(Contact).where(
            Contact.workspace_id == workspace_id,
            Contact.merged_into_id.is_(None),
            Contact.erased_at.is_(None),
        )
    )
    for contact in contacts:
        row = figures.get(contact.external_id)
        values: dict[str, Any] = {}
        if row is not None:
            first, last = _aware(row[1]), _aware(row[2])
            values.update(
                first_seen_at=first,
                last_seen_at=last,
                first_channel=row[3] or None,
                last_channel=row[4] or None,
                orders_count=int(row[5] or 0),
                gmv_cents=max(0, int(row[6] or 0)),
                last_order_at=_aware(row[7]) if row[8] else None,
            )
        made, qualified = invites.get(contact.id, (0, 0))
        values.update(invites_made=made, invites_qualified=qualified)
        campaign_id, referrer = sources.get(contact.id, (None, None))
        values.update(source_campaign_id=campaign_id, referrer_contact_id=referrer)
        if row is None:
            # No events: keep what live updates recorded (conversions may not be flushed yet).
            values.update(
                orders_count=contact.orders_count,
                gmv_cents=contact.gmv_cents,
                last_order_at=contact.last_order_at,
            )
        values["rfm_class"] = rfm_class(
            values["orders_count"], values["gmv_cents"], values["last_order_at"], now
        )
        if any(getattr(contact, k) != v for k, v in values.items()):
            for k, v in values.items():
                setattr(contact, k, v)
            changed += 1
    session.flush()
    return changed


def _invites(session: Session, workspace_id: str) -> dict[str, tuple[int, int]]:
    referrals = table("referrals")
    qualified = and_(referrals.c.qualified_at.is_not(None), referrals.c.invalidated_at.is_(None))
    rows = session.execute(
        select(
            referrals.c.referrer_contact_id,
            func.count(),
            func.count().filter(qualified),
        )
        .where(
            referrals.c.workspace_id == workspace_id,
            referrals.c.status.not_in(("superseded", "rejected", "blocked")),
        )
        .group_by(referrals.c.referrer_contact_id)
    )
    return {cid: (int(made), int(q)) for cid, made, q in rows}


def _sources(session: Session, workspace_id: str) -> dict[str, tuple[str, str]]:
    """The campaign and inviter that first brought each contact (earliest referral)."""
    referrals = table("referrals")
    rows = session.execute(
        select(
            referrals.c.referee_contact_id,
            referrals.c.campaign_id,
            referrals.c.referrer_contact_id,
        )
        .where(referrals.c.workspace_id == workspace_id)
        .order_by(referrals.c.created_at.desc())
    )
    # Newest first, so the earliest one is written last and wins.
    return {referee: (campaign, referrer) for referee, campaign, referrer in rows}


def reapply_merges(session: Session, store: EventStore, workspace_id: str) -> None:
    """Events that arrived under a merged contact's external id after the merge: move them to
    the survivor's (the UPDATE touches only such rows)."""
    rows = session.execute(
        select(Contact.external_id, Contact.merged_into_id).where(
            Contact.workspace_id == workspace_id, Contact.merged_into_id.is_not(None)
        )
    ).all()
    if not rows:
        return
    targets = dict(
        session.execute(
            select(Contact.id, Contact.external_id).where(Contact.id.in_({r[1] for r in rows}))
        ).all()
    )
    for external_id, into in rows:
        if into in targets:
            store.move_person(workspace_id, external_id, targets[into])


def reconcile_all(session: Session, store: EventStore, now: datetime) -> int:
    workspaces = table("workspaces")
    total = 0
    for (ws,) in session.execute(select(workspaces.c.id)):
        total += reconcile(session, store, ws, now)
    return total
