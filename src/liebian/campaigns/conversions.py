"""Conversions from the event pipeline into campaigns.

The event hooks worker (``events/hooks.py``, after the 202) applies batches of these event
names with :func:`apply_conversions`, one event at a time with :func:`apply_conversion`:

- ``signup`` — qualifies pending invites whose campaign's qualifying action is ``signup``;
- ``join_group`` — qualifies invites/posters whose qualifying action is ``join_group``;
- ``purchase`` / ``order_paid`` (same meaning) — qualifies ``first_purchase`` invites (the
  buyer's first purchase that is not fully refunded) and writes distribution commission on
  ``revenue`` (integer 分) for ``properties.order_id`` (the event id when absent), at the
  campaign's rate for ``properties.product_id`` when it sets one;
- ``refund`` — ``revenue`` is the refunded amount (0/absent = the whole order) of
  ``properties.order_id``; commission is recalculated or reversed. A *full* refund of the
  purchase that qualified a ``first_purchase`` invite un-qualifies it: the invitee reward and
  every tier reward that referral crossed are reversed (their stock returns) and the
  referrer's tiers are recomputed from the invites that still count. A later purchase
  qualifies it again;
- ``leave_group`` / ``unfollow`` — the invitee left: their invites stop counting;
- ``active`` — a heartbeat the brand sends for a returning user. Any of these events dated at
  least ``retained_days`` after the invite qualifies ``retained`` invites (see
  docs/decisions/0005-fission-jobs-webhooks-ledger.md for why not every event).

Idempotent per ``event_id``: the conversion row is inserted with ON CONFLICT DO NOTHING and
nothing else happens when it was already there, so replays and retries change nothing.

A batch is applied set-based: its contacts are found or created in two queries, two more find
which of them any campaign could care about (a referee of an invite/poster campaign, a bound
buyer in a distribution campaign); the conversions of everyone else only need their
``campaign_conversions`` row, written in one multi-row INSERT. Only the rest (and refunds, whose
order may belong to someone else) go through :func:`apply_conversion`, each in a savepoint so a
refused one (a DomainError) leaves the others. Rows are written in the batch's order, so a
person's purchase sees their earlier signup and a refund its purchase.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from liebian.campaigns import distribution, referrals, service
from liebian.campaigns.models import Campaign, Conversion, Participant, Referral
from liebian.campaigns.schemas import InviteConfig
from liebian.contacts import service as contacts
from liebian.contacts.repository import insert_ignore
from liebian.kit.clock import as_utc, utcnow
from liebian.kit.errors import DomainError, Invalid
from liebian.kit.ids import new_id
from liebian.kit.precompiled import executemany
from liebian.rewards import service as ledger
from liebian.rewards.models import RewardEntry

if TYPE_CHECKING:
    from liebian.events.hooks import HookEvent

log = logging.getLogger("liebian.campaigns")

_INVITE_REWARDS = ("tier", "invitee")

CONVERSION_EVENTS = frozenset(
    {
        "purchase",
        "order_paid",
        "refund",
        "signup",
        "join_group",
        "leave_group",
        "unfollow",
        "active",
    }
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
    amount = _checked_revenue(revenue)
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
    first_purchase = name == "purchase" and not _has_standing_purchase(
        session, workspace_id, contact.id
    )
    product_id = props.get("product_id")
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
    # The invitee's referrals, read once: several rules below look at the same rows.
    read: list[list[tuple[Referral, Campaign]]] = []

    def referrals_of() -> list[tuple[Referral, Campaign]]:
        if not read:
            read.append(_referee_referrals(session, workspace_id, contact.id))
        return read[0]

    if name == "purchase":
        distribution.on_purchase(
            session, workspace_id, contact.id, order_id=order_id, revenue=amount,
            currency=(currency or "CNY").upper()[:3], ts=ts,
            product_id=str(product_id)[:128] if product_id not in (None, "") else None,
        )  # fmt: skip
        if first_purchase:
            _qualify(session, referrals_of(), "first_purchase", ts, order_id=order_id)
    elif name == "refund":
        distribution.on_refund(session, workspace_id, order_id=order_id, event_id=event_id)
        _unqualify_refunded(session, workspace_id, order_id, event_id, ts)
    elif name in ("signup", "join_group"):
        _qualify(session, referrals_of(), name, ts)
    elif name == "leave_group":
        _invalidate(session, workspace_id, contact.id, ts)
    if name != "leave_group":
        _qualify_retained(session, referrals_of(), ts)


def _checked_revenue(revenue: int | None) -> int:
    amount = int(revenue or 0)
    if not 0 <= amount <= MAX_REVENUE:
        raise Invalid(
            f"revenue must be between 0 and {MAX_REVENUE} (integer 分)",
            code="invalid_revenue",
            details={"field": "revenue"},
        )
    return amount


def apply_conversions(session: Session, workspace_id: str, events: Sequence[HookEvent]) -> int:
    """Apply a batch of one workspace's conversion events in order (see the module docstring);
    returns how many were applied. A conversion the rules refuse is logged and skipped: the
    event itself is stored and acknowledged already."""
    valid: list[tuple[HookEvent, str, int]] = []
    for event in events:
        if event.event not in CONVERSION_EVENTS or not event.user_id:
            continue
        try:
            external_id = contacts.check_external_id(event.user_id)
            amount = _checked_revenue(event.revenue)
        except DomainError as exc:
            _refused(event, exc)
            continue
        valid.append((event, external_id, amount))
    if not valid:
        return 0
    contact_ids = contacts.ensure_ids(session, workspace_id, {ext for _, ext, _ in valid})
    # Who any campaign could care about: none to look for when the workspace has no
    # campaign of the kind (one query instead of two per 500 people).
    kinds = _campaign_kinds(session, workspace_id)
    referees = (
        _referees_among(session, workspace_id, contact_ids.values())
        if kinds & {"invite", "poster"}
        else set()
    )
    buyers = (
        _bound_buyers_among(session, workspace_id, contact_ids.values())
        if "distribution" in kinds
        and any(_ALIASES.get(e.event, e.event) == "purchase" for e, _, _ in valid)
        else set()
    )
    pending: list[dict[str, Any]] = []
    created = utcnow()
    for event, external_id, amount in valid:
        name = _ALIASES.get(event.event, event.event)
        contact_id = contact_ids[external_id]
        if name != "refund" and contact_id not in referees and contact_id not in buyers:
            # Nothing in any campaign depends on it: only its row, in the batch's INSERT.
            props = event.properties or {}
            pending.append(
                {
                    "id": new_id("cnv"), "workspace_id": workspace_id,
                    "event_id": event.event_id[:128], "contact_id": contact_id, "event": name,
                    "order_id": str(props.get("order_id") or event.event_id)[:128],
                    "revenue": amount, "currency": (event.currency or "CNY").upper()[:3],
                    "ts": as_utc(event.ts), "created_at": created,
                }
            )  # fmt: skip
            continue
        # The full rules read earlier rows (purchases, refunds): write those first.
        _insert_conversions(session, pending)
        try:
            with session.begin_nested():
                apply_conversion(
                    session, workspace_id, user_id=external_id, event=event.event,
                    event_id=event.event_id, revenue=amount, currency=event.currency,
                    ts=event.ts, properties=event.properties,
                )  # fmt: skip
        except DomainError as exc:
            _refused(event, exc)
    _insert_conversions(session, pending)
    return len(valid)


def _refused(event: HookEvent, exc: DomainError) -> None:
    log.warning(
        "conversion %s (%s) not applied to campaigns: %s", event.event_id, event.event, exc.message
    )


def _chunks(values: Iterable[str], size: int = 500) -> Iterable[list[str]]:
    ordered = sorted(set(values))
    for start in range(0, len(ordered), size):
        yield ordered[start : start + size]


def _campaign_kinds(session: Session, workspace_id: str) -> set[str]:
    """The types of the workspace's campaigns that conversions can change: invite and poster
    campaigns of any status (a referral keeps its campaign's rules), distribution campaigns
    that are active (as ``_bound_buyers_among``)."""
    rows = session.execute(
        select(Campaign.type)
        .where(
            Campaign.workspace_id == workspace_id,
            Campaign.type.in_(("invite", "poster"))
            | ((Campaign.type == "distribution") & (Campaign.status == "active")),
        )
        .distinct()
    )
    return {kind for (kind,) in rows}


def _referees_among(session: Session, workspace_id: str, contact_ids: Iterable[str]) -> set[str]:
    """Those of ``contact_ids`` who are invitees in an invite/poster campaign."""
    found: set[str] = set()
    for chunk in _chunks(contact_ids):
        found.update(
            session.scalars(
                select(Referral.referee_contact_id)
                .join(Campaign, Campaign.id == Referral.campaign_id)
                .where(
                    Referral.workspace_id == workspace_id,
                    Referral.referee_contact_id.in_(chunk),
                    Referral.status != "superseded",
                    Campaign.type.in_(("invite", "poster")),
                )
                .distinct()
            )
        )
    return found


def _bound_buyers_among(
    session: Session, workspace_id: str, contact_ids: Iterable[str]
) -> set[str]:
    """Those of ``contact_ids`` bound to a referrer in an active distribution campaign."""
    found: set[str] = set()
    for chunk in _chunks(contact_ids):
        found.update(
            session.scalars(
                select(Participant.contact_id)
                .join(Campaign, Campaign.id == Participant.campaign_id)
                .where(
                    Participant.workspace_id == workspace_id,
                    Participant.contact_id.in_(chunk),
                    Participant.referrer_participant_id.is_not(None),
                    Campaign.type == "distribution",
                    Campaign.status == "active",
                )
                .distinct()
            )
        )
    return found


@functools.cache
def _insert_conversions_stmt(dialect: str) -> Any:
    make: Any = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}[dialect]
    return make(Conversion.__table__).on_conflict_do_nothing(
        index_elements=["workspace_id", "event_id"]
    )


def _insert_conversions(session: Session, rows: list[dict[str, Any]]) -> None:
    if rows:
        executemany(session, _insert_conversions_stmt(session.get_bind().dialect.name), rows)
        rows.clear()


def _has_standing_purchase(session: Session, workspace_id: str, contact_id: str) -> bool:
    """Whether the contact has a purchase that was not refunded in full."""
    orders = session.execute(
        select(Conversion.order_id, func.sum(Conversion.revenue))
        .where(
            Conversion.workspace_id == workspace_id,
            Conversion.contact_id == contact_id,
            Conversion.event == "purchase",
        )
        .group_by(Conversion.order_id)
    ).all()
    for order_id, paid in orders:
        refunds = session.execute(
            select(func.count(), func.coalesce(func.sum(Conversion.revenue), 0)).where(
                Conversion.workspace_id == workspace_id,
                Conversion.order_id == order_id,
                Conversion.event == "refund",
            )
        ).one()
        if refunds[0] == 0 or int(refunds[1]) < int(paid or 0):
            return True
    return False


_REFEREE_REFERRALS = (
    select(Referral, Campaign)
    .join(Campaign, Campaign.id == Referral.campaign_id)
    .where(
        Referral.workspace_id == bindparam("ws"),
        Referral.referee_contact_id == bindparam("contact"),
        Referral.status != "superseded",
        Campaign.type.in_(("invite", "poster")),
    )
)


def _referee_referrals(
    session: Session, workspace_id: str, contact_id: str
) -> list[tuple[Referral, Campaign]]:
    # Built once (module level): this runs for every conversion event.
    rows = session.execute(_REFEREE_REFERRALS, {"ws": workspace_id, "contact": contact_id})
    return [(r, c) for r, c in rows.all()]


def _qualify(
    session: Session,
    pending: list[tuple[Referral, Campaign]],
    action: str,
    ts: datetime,
    *,
    order_id: str | None = None,
) -> None:
    for referral, campaign in pending:
        if referral.qualified_at is not None:
            continue
        wanted = referrals.qualifying_action(service.config_of(campaign))
        if wanted == action:
            referrals.qualify(session, campaign, referral, ts, order_id=order_id)


def _invalidate(session: Session, workspace_id: str, contact_id: str, ts: datetime) -> None:
    for referral, campaign in _referee_referrals(session, workspace_id, contact_id):
        if getattr(service.config_of(campaign), "invalid_on_leave", True):
            referrals.invalidate(session, referral, ts, reason="invitee left")


def _qualify_retained(
    session: Session, pending: list[tuple[Referral, Campaign]], ts: datetime
) -> None:
    """``retained``: the invitee is still around ``retained_days`` after being invited."""
    for referral, campaign in pending:
        if referral.qualified_at is not None or referral.invalidated_at is not None:
            continue
        config = service.config_of(campaign)
        if not isinstance(config, InviteConfig) or config.qualifying_action != "retained":
            continue
        assert config.retained_days is not None  # the schema requires it for "retained"
        if ts >= referral.created_at + timedelta(days=config.retained_days):
            referrals.qualify(session, campaign, referral, ts)


def _unqualify_refunded(
    session: Session, workspace_id: str, order_id: str, event_id: str, ts: datetime
) -> None:
    """A purchase refunded in full no longer qualifies the ``first_purchase`` invite it
    qualified, unless the buyer has another purchase that stands."""
    paid = distribution._order_total(session, workspace_id, order_id, "purchase")
    if paid - distribution._order_total(session, workspace_id, order_id, "refund") > 0:
        return  # a partial refund: the purchase still happened
    buyer = session.scalars(
        select(Conversion.contact_id).where(
            Conversion.workspace_id == workspace_id,
            Conversion.order_id == order_id,
            Conversion.event == "purchase",
        )
    ).first()
    if buyer is None or _has_standing_purchase(session, workspace_id, buyer):
        return
    for referral, campaign in _referee_referrals(session, workspace_id, buyer):
        config = service.config_of(campaign)
        if referral.qualified_at is None or referrals.qualifying_action(config) != "first_purchase":
            continue
        referral.qualified_at = None
        session.flush()
        # The invitee reward and every tier this referral crossed; the tiers are then
        # re-granted from the invites that still count, if they still reach them.
        ledger.reverse_where(
            session,
            RewardEntry.workspace_id == workspace_id,
            RewardEntry.referral_id == referral.id,
            RewardEntry.reason.in_(_INVITE_REWARDS),
            reason=f"refund {event_id}",
        )
        referrals.evaluate_tiers(session, campaign, referral.referrer_participant_id, ts)
