"""Rewards ledger rules: grant once, move pending → approved → issued, reverse, settle.

Exactly-once comes from the schema, not from luck: a grant is ``INSERT … ON CONFLICT DO
NOTHING`` on the unique (workspace, idempotency key), and every status move is a conditional
``UPDATE … WHERE status = <expected>``, so of N concurrent movers exactly one sees a row change.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import and_, case, func, or_, select, update
from sqlalchemy.orm import Session

from liebian.campaigns.models import Campaign, Referral
from liebian.contacts.repository import insert_ignore
from liebian.kit.bus import outbox_wants, publish_after_commit
from liebian.kit.clock import utcnow
from liebian.kit.errors import Conflict, Invalid, NotFound
from liebian.kit.ids import new_id
from liebian.kit.pagination import paginate
from liebian.rewards.models import RewardEntry
from liebian.rewards.payouts import repository as payouts_repo

RewardKind = Literal["coupon", "points", "gift", "cash"]
KINDS: tuple[str, ...] = ("coupon", "points", "gift", "cash")
# Same ceiling as campaign configs: ¥1,000,000 in 分 for one entry.
MAX_AMOUNT = 100_000_000
ACTIVE = ("pending", "approved", "issued")
# Grants that took a unit of campaign stock (and their money from its budget) when written:
# reversing one gives both back, so a refund or a rejection does not shrink the campaign.
STOCKED_REASONS = ("tier", "invitee", "assist")
# Bus / webhook topics (the webhook outbox turns them into signed POSTs).
REWARD_ISSUED = "reward.issued"
REWARD_REVERSED = "reward.reversed"
_COUPON_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"  # no 0/O, 1/I/L: read off a phone


def new_coupon_code() -> str:
    # 10 characters of a 31-symbol alphabet ≈ 49 bits; the unique index catches the impossible.
    return "LB" + "".join(secrets.choice(_COUPON_ALPHABET) for _ in range(10))


@dataclass(frozen=True, slots=True)
class Grant:
    workspace_id: str
    contact_id: str
    key: str
    kind: str
    amount: int
    name: str = ""
    campaign_id: str | None = None
    currency: str = "CNY"
    reason: str = "manual"
    status: Literal["pending", "approved", "issued"] = "pending"
    available_at: datetime | None = None
    referral_id: str | None = None
    order_id: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def check_amount(kind: str, amount: int, *, allow_negative: bool = False) -> None:
    if kind not in KINDS:
        raise Invalid(
            f"kind must be one of {', '.join(KINDS)}",
            code="invalid_kind",
            details={"field": "kind"},
        )
    low = -MAX_AMOUNT if allow_negative else 1
    if not low <= amount <= MAX_AMOUNT or amount == 0:
        raise Invalid(
            f"amount must be a whole number between 1 and {MAX_AMOUNT} (integer 分 / points / units)",
            code="invalid_amount",
            details={"field": "amount", "max": MAX_AMOUNT},
        )


def grant(session: Session, g: Grant) -> tuple[RewardEntry, bool]:
    """Write the entry for ``g.key`` unless it exists; return it and whether it is new."""
    check_amount(g.kind, g.amount, allow_negative=g.reason == "clawback")
    if len(g.key) > 200 or not g.key:
        raise Invalid("idempotency key must be 1–200 characters", code="invalid_idempotency_key")
    now = utcnow()
    created = insert_ignore(
        session,
        RewardEntry.__table__,
        {
            "id": new_id("rwd"),
            "workspace_id": g.workspace_id,
            "contact_id": g.contact_id,
            "campaign_id": g.campaign_id,
            "idempotency_key": g.key,
            "kind": g.kind,
            "name": g.name[:64],
            "amount": g.amount,
            "currency": g.currency,
            "status": g.status,
            "reason": g.reason,
            "coupon_code": new_coupon_code() if g.kind == "coupon" else None,
            "referral_id": g.referral_id,
            "order_id": g.order_id,
            "available_at": g.available_at or now,
            "meta": g.meta,
            "created_at": now,
            "approved_at": now if g.status in ("approved", "issued") else None,
            "issued_at": now if g.status == "issued" else None,
        },
        ["workspace_id", "idempotency_key"],
    )
    entry = session.scalars(
        select(RewardEntry)
        .where(RewardEntry.workspace_id == g.workspace_id, RewardEntry.idempotency_key == g.key)
        .execution_options(populate_existing=True)
    ).one()
    if created and entry.status == "issued":
        _announce(session, REWARD_ISSUED, [entry.id])
    return entry, created


def _announce(session: Session, topic: str, entry_ids: list[str]) -> None:
    if entry_ids:
        publish_after_commit(session, topic, {"entry_ids": entry_ids})


def release_stock(session: Session, campaign_id: str, *, units: int, amount: int = 0) -> None:
    """Give back stock units and budget (分) taken by ``campaigns.service.take_stock``; never
    below zero."""
    if units <= 0 and amount <= 0:
        return
    session.execute(
        update(Campaign)
        .where(Campaign.id == campaign_id)
        .values(
            stock_used=case((Campaign.stock_used >= units, Campaign.stock_used - units), else_=0),
            budget_used=case(
                (Campaign.budget_used >= amount, Campaign.budget_used - amount), else_=0
            ),
        )
        .execution_options(synchronize_session=False)
    )


def _release_for(session: Session, rows: Any) -> None:
    """``rows``: (campaign_id, reason, kind, amount) of entries just reversed."""
    per_campaign: dict[str, list[int]] = {}
    for campaign_id, reason, kind, amount in rows:
        if campaign_id and reason in STOCKED_REASONS:
            slot = per_campaign.setdefault(campaign_id, [0, 0])
            slot[0] += 1
            slot[1] += amount if kind in ("coupon", "cash") else 0
    for campaign_id, (units, money) in per_campaign.items():
        release_stock(session, campaign_id, units=units, amount=money)


def find_by_key(session: Session, workspace_id: str, key: str) -> RewardEntry | None:
    return session.scalars(
        select(RewardEntry).where(
            RewardEntry.workspace_id == workspace_id, RewardEntry.idempotency_key == key
        )
    ).first()


def get_entry(session: Session, workspace_id: str, entry_id: str) -> RewardEntry:
    entry = session.scalars(
        select(RewardEntry)
        .where(RewardEntry.workspace_id == workspace_id, RewardEntry.id == entry_id)
        .execution_options(populate_existing=True)
    ).first()
    if entry is None:
        raise NotFound(f"no reward entry {entry_id!r} in this workspace", code="reward_not_found")
    return entry


_TRANSITIONS: dict[str, tuple[tuple[str, ...], str]] = {
    "approve": (("pending",), "approved"),
    "issue": (("pending", "approved"), "issued"),
    "reverse": (ACTIVE, "reversed"),
}


def transition(
    session: Session, workspace_id: str, entry_id: str, action: str, *, reason: str | None = None
) -> tuple[RewardEntry, bool]:
    """Apply ``action``; returns (entry, changed). Repeating an action that already happened
    is not an error (a retried callback must succeed); an impossible move is a 409.

    Reversing cash that a payout batch holds (paid, or exported and waiting) leaves the entry
    as it is and writes a debit instead (``changed`` says whether the debit is new): the
    money has left or is leaving, so the next batch takes it back."""
    allowed_from, target = _TRANSITIONS[action]
    if target == "reversed":
        payouts_repo.lock_workspace(session, workspace_id)
        entry = get_entry(session, workspace_id, entry_id)
        if entry.status in ACTIVE and payouts_repo.held_entry_ids(session, [entry.id]):
            return entry, _debit(session, entry, reason or "reversed")
    now = utcnow()
    values: dict[str, Any] = {"status": target}
    if target == "approved":
        values["approved_at"] = now
    elif target == "issued":
        values["issued_at"] = now
        values["approved_at"] = func.coalesce(RewardEntry.approved_at, now)
    else:
        values["reversed_at"] = now
        values["reversal_reason"] = (reason or "reversed")[:200]
    result = session.execute(
        update(RewardEntry)
        .where(
            RewardEntry.workspace_id == workspace_id,
            RewardEntry.id == entry_id,
            RewardEntry.status.in_(allowed_from),
        )
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    entry = get_entry(session, workspace_id, entry_id)
    changed = bool(result.rowcount)  # type: ignore[attr-defined]
    if changed and target == "reversed":
        _release_for(session, [(entry.campaign_id, entry.reason, entry.kind, entry.amount)])
        _announce(session, REWARD_REVERSED, [entry.id])
    elif changed and target == "issued":
        _announce(session, REWARD_ISSUED, [entry.id])
    if not changed and entry.status != target:
        raise Conflict(
            f"cannot {action} an entry that is {entry.status}",
            code="invalid_reward_transition",
            details={"status": entry.status, "action": action},
        )
    return entry, changed


def _debit(session: Session, entry: RewardEntry, reason: str) -> bool:
    """Take back held (paid or being paid) cash with a negative entry the next payout batch
    nets out; once per entry. The stock and budget it took go back as for a reversal."""
    _debit_entry, created = grant(
        session,
        Grant(
            workspace_id=entry.workspace_id, contact_id=entry.contact_id, key=f"debit:{entry.id}",
            kind="cash", amount=-entry.amount, name=entry.name, campaign_id=entry.campaign_id,
            currency=entry.currency, reason="clawback", status="issued",
            referral_id=entry.referral_id, order_id=entry.order_id,
            meta={"debit_of": entry.id, "why": reason[:200]},
        ),
    )  # fmt: skip
    if created:
        _release_for(session, [(entry.campaign_id, entry.reason, entry.kind, entry.amount)])
        _announce(session, REWARD_REVERSED, [entry.id])
    return created


def reverse_where(session: Session, *conditions: Any, reason: str) -> int:
    """Reverse every active entry matching ``conditions`` (rejections, refunds); stock and
    budget they took go back to their campaigns. Cash a payout batch holds is debited
    instead (``_debit``)."""
    workspaces = session.scalars(
        select(RewardEntry.workspace_id)
        .where(RewardEntry.status.in_(ACTIVE), RewardEntry.kind == "cash", *conditions)
        .distinct()
    ).all()
    for workspace_id in sorted(workspaces):
        payouts_repo.lock_workspace(session, workspace_id)
    held_entries: list[RewardEntry] = []
    if workspaces:
        held_entries = list(
            session.scalars(
                select(RewardEntry).where(
                    RewardEntry.status.in_(ACTIVE),
                    RewardEntry.kind == "cash",
                    payouts_repo.held(RewardEntry.id),
                    *conditions,
                )
            )
        )
    debited = sum(1 for entry in held_entries if _debit(session, entry, reason))
    rows = session.execute(
        update(RewardEntry)
        .where(RewardEntry.status.in_(ACTIVE), ~payouts_repo.held(RewardEntry.id), *conditions)
        .values(status="reversed", reversed_at=utcnow(), reversal_reason=reason[:200])
        .returning(
            RewardEntry.id,
            RewardEntry.campaign_id,
            RewardEntry.reason,
            RewardEntry.kind,
            RewardEntry.amount,
        )
        .execution_options(synchronize_session=False)
    ).all()
    _release_for(session, [row[1:] for row in rows])
    _announce(session, REWARD_REVERSED, [row[0] for row in rows])
    return len(rows) + debited


@dataclass(frozen=True, slots=True)
class SettleResult:
    approved: int
    issued: int


def settle(
    session: Session, now: datetime, *, batch_size: int = 50_000, workspace_id: str | None = None
) -> SettleResult:
    """The settlement job: approve pending entries whose waiting period has passed and whose
    referral (if any) is approved, then issue every approved entry that is due.

    Set-based UPDATEs in batches, so settling is bound by the database, not Python (see
    bench/bench_settlement.py). Held referrals keep their entries pending; rejected ones were
    already reversed by the review.
    """
    referral_ok = or_(
        RewardEntry.referral_id.is_(None),
        RewardEntry.referral_id.in_(select(Referral.id).where(Referral.status == "approved")),
    )
    scope = RewardEntry.workspace_id == workspace_id if workspace_id else and_(True)
    # Due pending entries go straight to issued in one write (approved_at and issued_at both
    # set): every row is touched once, which halves the index maintenance on PostgreSQL.
    # Ids are read back only when a webhook endpoint listens for issued rewards.
    announce = outbox_wants(session, REWARD_ISSUED)
    approved = _batched(
        session,
        and_(RewardEntry.status == "pending", RewardEntry.available_at <= now, referral_ok, scope),
        {"status": "issued", "approved_at": now, "issued_at": now},
        batch_size,
        announce,
    )
    # Entries an operator approved by hand are issued once their date has come.
    issued = approved + _batched(
        session,
        and_(RewardEntry.status == "approved", RewardEntry.available_at <= now, scope),
        {"status": "issued", "issued_at": now},
        batch_size,
        announce,
    )
    return SettleResult(approved=approved, issued=issued)


def _batched(
    session: Session,
    condition: Any,
    values: dict[str, Any],
    batch_size: int,
    announce: bool = False,
) -> int:
    total = 0
    while True:
        ids = select(RewardEntry.id).where(condition).limit(batch_size).scalar_subquery()
        stmt = (
            update(RewardEntry)
            .where(RewardEntry.id.in_(ids))
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        if announce:
            moved = list(session.execute(stmt.returning(RewardEntry.id)).scalars())
            _announce(session, REWARD_ISSUED, moved)
            count = len(moved)
        else:
            count = int(session.execute(stmt).rowcount)  # type: ignore[attr-defined]
        total += count
        if count < batch_size:
            return total


def list_entries(
    session: Session,
    workspace_id: str,
    *,
    campaign_id: str | None = None,
    contact_id: str | None = None,
    status: str | None = None,
    kind: str | None = None,
    cursor: str | None = None,
    limit: int = 100,
) -> list[RewardEntry]:
    stmt = select(RewardEntry).where(RewardEntry.workspace_id == workspace_id)
    if campaign_id:
        stmt = stmt.where(RewardEntry.campaign_id == campaign_id)
    if contact_id:
        stmt = stmt.where(RewardEntry.contact_id == contact_id)
    if status:
        stmt = stmt.where(RewardEntry.status == status)
    if kind:
        stmt = stmt.where(RewardEntry.kind == kind)
    return list(session.scalars(paginate(stmt, RewardEntry.id, cursor, limit)))


def balances(session: Session, workspace_id: str, contact_id: str) -> list[dict[str, Any]]:
    """Per kind and currency: sums of pending, approved and issued entries (reversed count
    nothing). Computed from the ledger every time, so it cannot disagree with it."""

    def _sum(status: str) -> Any:
        return func.coalesce(
            func.sum(case((RewardEntry.status == status, RewardEntry.amount), else_=0)), 0
        )

    rows = session.execute(
        select(
            RewardEntry.kind,
            RewardEntry.currency,
            _sum("pending"),
            _sum("approved"),
            _sum("issued"),
        )
        .where(RewardEntry.workspace_id == workspace_id, RewardEntry.contact_id == contact_id)
        .group_by(RewardEntry.kind, RewardEntry.currency)
        .order_by(RewardEntry.kind, RewardEntry.currency)
    ).all()
    payouts = payouts_repo.paid_and_held_sums(session, workspace_id, contact_id)
    out = []
    for kind, currency, p, a, i in rows:
        paid, in_payout = payouts.get(currency, (0, 0)) if kind == "cash" else (0, 0)
        out.append(
            {
                "kind": kind,
                "currency": currency,
                "pending": int(p),
                "approved": int(a),
                "issued": int(i),
                "total": int(p) + int(a) + int(i),
                # Of the issued cash: paid out, and in a batch finance has not reported yet;
                # the rest (issued - paid - in_payout) is what the next batch pays.
                "paid": paid,
                "in_payout": in_payout,
            }
        )
    return out


def yuan(fen: int) -> str:
    """Integer 分 as a yuan string without ever going through a float."""
    sign = "-" if fen < 0 else ""
    whole, cents = divmod(abs(fen), 100)
    return f"{sign}{whole}.{cents:02d}"
