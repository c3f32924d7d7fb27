"""Distribution (分销) commissions: on real sales only, two levels at most.

Commission is ``revenue × rate_bp / 10 000`` (integer 分, rounded down; the rate of the
purchased product when the campaign sets one in ``product_rates``) for the buyer's bound
referrer and, when the campaign has a second level, that referrer's own referrer. It waits
``freeze_days`` (the refund window) as *pending*; the settlement job approves and issues it.
A refund recalculates: untouched commission is reversed and re-granted on the remaining amount;
commission already issued is clawed back with a negative entry, so the ledger sum is always
what the distributor earned.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from liebian.campaigns import repository, service
from liebian.campaigns.models import Campaign, Conversion, Participant
from liebian.campaigns.schemas import DistributionConfig
from liebian.rewards import service as ledger
from liebian.rewards.models import RewardEntry

# Referral states under which a sale earns commission (held ones wait in pending until a
# reviewer approves; settlement will not approve them before).
_PAYABLE = ("approved", "held")


def commission(revenue: int, rate_bp: int) -> int:
    return revenue * rate_bp // 10_000


def on_purchase(
    session: Session,
    workspace_id: str,
    contact_id: str,
    *,
    order_id: str,
    revenue: int,
    currency: str,
    ts: datetime,
    product_id: str | None = None,
) -> int:
    """Write pending commission for every distribution campaign the buyer is bound in, at
    the campaign's rate for ``product_id`` when it has one, else at its level rates."""
    if revenue <= 0:
        return 0
    written = 0
    rows = session.execute(
        select(Participant, Campaign)
        .join(Campaign, Campaign.id == Participant.campaign_id)
        .where(
            Participant.workspace_id == workspace_id,
            Participant.contact_id == contact_id,
            Participant.referrer_participant_id.is_not(None),
            Campaign.type == "distribution",
            Campaign.status == "active",
        )
    ).all()
    for buyer, campaign in rows:
        config = service.config_of(campaign)
        assert isinstance(config, DistributionConfig)
        referral = repository.current_referral(session, campaign.id, buyer.id)
        if referral is None or referral.status not in _PAYABLE:
            continue
        chain: list[Participant] = []
        level1 = session.get(Participant, buyer.referrer_participant_id)
        if level1 is not None:
            chain.append(level1)
            if len(config.levels) > 1 and level1.referrer_participant_id:
                level2 = session.get(Participant, level1.referrer_participant_id)
                # Never pay anyone commission on their own purchase (a loop in the bindings).
                if level2 is not None and level2.contact_id != contact_id:
                    chain.append(level2)
        levels = (
            config.product_rates.get(product_id, config.levels) if product_id else config.levels
        )
        for level, earner in enumerate(chain[:2], start=1):  # two levels, never more
            rate = levels[level - 1].rate_bp
            amount = commission(revenue, rate)
            if amount <= 0:
                continue
            ledger.grant(
                session,
                ledger.Grant(
                    workspace_id=workspace_id, contact_id=earner.contact_id,
                    key=f"commission:{campaign.id}:{order_id}:{level}", kind="cash", amount=amount,
                    name=f"分销佣金（{level}级）", campaign_id=campaign.id, currency=currency,
                    reason="commission", status="pending", available_at=ts + timedelta(days=config.freeze_days),
                    referral_id=referral.id, order_id=order_id,
                    meta={"level": level, "rate_bp": rate, "base": revenue, "buyer": contact_id,
                          "product_id": product_id},
                ),
            )  # fmt: skip
            written += 1
    return written


def on_refund(session: Session, workspace_id: str, *, order_id: str, event_id: str) -> int:
    """Recalculate commission of ``order_id`` on what remains after all refunds so far."""
    paid = _order_total(session, workspace_id, order_id, "purchase")
    refunded = _order_total(session, workspace_id, order_id, "refund")
    remaining = max(0, paid - refunded)
    entries = list(
        session.scalars(
            select(RewardEntry).where(
                RewardEntry.workspace_id == workspace_id,
                RewardEntry.order_id == order_id,
                RewardEntry.reason.in_(("commission", "clawback")),
                RewardEntry.status.in_(ledger.ACTIVE),
            )
        )
    )
    by_slot: dict[tuple[str | None, int], list[RewardEntry]] = defaultdict(list)
    for entry in entries:
        by_slot[(entry.campaign_id, int(entry.meta.get("level", 1)))].append(entry)
    changed = 0
    for (campaign_id, level), slot in by_slot.items():
        template = next(e for e in slot if e.reason == "commission")
        rate = int(template.meta["rate_bp"])
        expected = commission(remaining, rate)
        current = sum(e.amount for e in slot)
        if current == expected:
            continue
        # Not yet paid out: reverse and re-grant on the new base (Rewardful-style).
        unpaid = [e for e in slot if e.status in ("pending", "approved")]
        for entry in unpaid:
            ledger.transition(
                session, workspace_id, entry.id, "reverse", reason=f"refund {event_id}"
            )
            current -= entry.amount
        diff = expected - current
        meta = {**template.meta, "base": remaining, "refund_event": event_id}
        if diff > 0:
            key, reason, status = (
                f"commission:{campaign_id}:{order_id}:{level}:r:{event_id}",
                "commission",
                "pending",
            )
        elif diff < 0:
            # Already issued: take it back with a negative entry so the balance nets out.
            key, reason, status = (
                f"clawback:{campaign_id}:{order_id}:{level}:{event_id}",
                "clawback",
                "issued",
            )
        if diff != 0:
            ledger.grant(
                session,
                ledger.Grant(
                    workspace_id=workspace_id, contact_id=template.contact_id, key=key, kind="cash",
                    amount=diff, name=template.name, campaign_id=campaign_id, currency=template.currency,
                    reason=reason, status=status,  # type: ignore[arg-type]
                    available_at=template.available_at if diff > 0 else None,
                    referral_id=template.referral_id, order_id=order_id, meta=meta,
                ),
            )  # fmt: skip
        changed += 1
    return changed


def _order_total(session: Session, workspace_id: str, order_id: str, event: str) -> int:
    value = session.scalar(
        select(func.coalesce(func.sum(Conversion.revenue), 0)).where(
            Conversion.workspace_id == workspace_id,
            Conversion.order_id == order_id,
            Conversion.event == event,
        )
    )
    return int(value or 0)
