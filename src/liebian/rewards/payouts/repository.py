"""All SQL for payout batches."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, delete, exists, func, insert, literal, select, text, update
from sqlalchemy.orm import Session

from liebian.rewards.models import RewardEntry
from liebian.rewards.payouts.models import PayoutBatch, PayoutItem, PayoutLine


def lock_workspace(session: Session, workspace_id: str) -> None:
    """Serialize payout decisions of one workspace until the transaction ends.

    SQLite needs nothing: every transaction here is BEGIN IMMEDIATE, one writer at a time.
    On PostgreSQL a transaction-scoped advisory lock keyed by the workspace makes batch
    creation and reversals of held entries take turns, so a reversal can never slip between
    "this entry is unpaid" and "this entry is now in a batch".
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(
            text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": f"payouts:{workspace_id}"}
        )


def held(entry_id: Any) -> Any:
    """True for an entry a pending or paid line holds."""
    return exists().where(PayoutItem.entry_id == entry_id, PayoutItem.holding == 1)


def _payable(workspace_id: str, campaign_id: str | None, currency: str | None) -> list[Any]:
    conditions = [
        RewardEntry.workspace_id == workspace_id,
        RewardEntry.kind == "cash",
        RewardEntry.status == "issued",
        ~held(RewardEntry.id),
    ]
    if campaign_id is not None:
        conditions.append(RewardEntry.campaign_id == campaign_id)
    if currency is not None:
        conditions.append(RewardEntry.currency == currency)
    return conditions


def unpaid_groups(
    session: Session, workspace_id: str, campaign_id: str | None, currency: str | None
) -> list[tuple[str, str | None, str, int, int]]:
    """(contact_id, campaign_id, currency, net amount, entries) of settled, unheld cash."""
    rows = session.execute(
        select(
            RewardEntry.contact_id,
            RewardEntry.campaign_id,
            RewardEntry.currency,
            func.sum(RewardEntry.amount),
            func.count(),
        )
        .where(*_payable(workspace_id, campaign_id, currency))
        .group_by(RewardEntry.contact_id, RewardEntry.campaign_id, RewardEntry.currency)
        .order_by(RewardEntry.contact_id, RewardEntry.campaign_id, RewardEntry.currency)
    ).all()
    return [(c, cmp, cur, int(total), int(n)) for c, cmp, cur, total, n in rows]


def hold_entries(
    session: Session,
    batch_id: str,
    workspace_id: str,
    campaign_id: str | None,
    currency: str | None,
) -> None:
    """Put every payable entry of each line's (payee, campaign, currency) under that line,
    in one INSERT … SELECT."""
    line = PayoutLine
    source = (
        select(
            line.id,
            RewardEntry.id,
            literal(workspace_id),
            literal(batch_id),
            RewardEntry.amount,
            literal(1),
        )
        .join(
            line,
            and_(
                line.batch_id == batch_id,
                line.contact_id == RewardEntry.contact_id,
                line.currency == RewardEntry.currency,
                line.campaign_id.is_not_distinct_from(RewardEntry.campaign_id),
            ),
        )
        .where(*_payable(workspace_id, campaign_id, currency))
    )
    session.execute(
        insert(PayoutItem).from_select(
            ["line_id", "entry_id", "workspace_id", "batch_id", "amount", "holding"], source
        )
    )


def refresh_lines(session: Session, batch_id: str) -> None:
    """Each line's amount and count from the entries it holds: the line is what it pays."""
    items = PayoutItem
    session.execute(
        update(PayoutLine)
        .where(PayoutLine.batch_id == batch_id)
        .values(
            amount=select(func.coalesce(func.sum(items.amount), 0))
            .where(items.line_id == PayoutLine.id, items.holding == 1)
            .scalar_subquery(),
            entry_count=select(func.count())
            .where(items.line_id == PayoutLine.id, items.holding == 1)
            .scalar_subquery(),
        )
        .execution_options(synchronize_session=False)
    )


def drop_lines(session: Session, line_ids: Sequence[str]) -> None:
    if not line_ids:
        return
    session.execute(delete(PayoutItem).where(PayoutItem.line_id.in_(line_ids)))
    session.execute(delete(PayoutLine).where(PayoutLine.id.in_(line_ids)))


def lines_of(session: Session, batch_id: str) -> list[PayoutLine]:
    return list(
        session.scalars(
            select(PayoutLine)
            .where(PayoutLine.batch_id == batch_id)
            .order_by(PayoutLine.id)
            .execution_options(populate_existing=True)
        )
    )


def batch_by_key(session: Session, workspace_id: str, key: str) -> PayoutBatch | None:
    return session.scalars(
        select(PayoutBatch).where(
            PayoutBatch.workspace_id == workspace_id, PayoutBatch.idempotency_key == key
        )
    ).first()


def batch(session: Session, workspace_id: str, batch_id: str) -> PayoutBatch | None:
    return session.scalars(
        select(PayoutBatch)
        .where(PayoutBatch.workspace_id == workspace_id, PayoutBatch.id == batch_id)
        .execution_options(populate_existing=True)
    ).first()


def decide_line(
    session: Session, batch_id: str, line_id: str, status: str, values: dict[str, Any]
) -> bool:
    """pending → paid | failed, once: a conditional UPDATE, so of two deciders one wins."""
    result = session.execute(
        update(PayoutLine)
        .where(
            PayoutLine.id == line_id,
            PayoutLine.batch_id == batch_id,
            PayoutLine.status == "pending",
        )
        .values(status=status, **values)
        .execution_options(synchronize_session=False)
    )
    changed = bool(result.rowcount)  # type: ignore[attr-defined]
    if changed and status == "failed":
        # The entries go back to the pool: the next batch pays them.
        session.execute(
            update(PayoutItem)
            .where(PayoutItem.line_id == line_id)
            .values(holding=None)
            .execution_options(synchronize_session=False)
        )
    return changed


def pending_lines(session: Session, batch_id: str) -> int:
    return int(
        session.scalar(
            select(func.count()).where(
                PayoutLine.batch_id == batch_id, PayoutLine.status == "pending"
            )
        )
        or 0
    )


def held_entry_ids(session: Session, entry_ids: Sequence[str]) -> set[str]:
    if not entry_ids:
        return set()
    return set(
        session.scalars(
            select(PayoutItem.entry_id).where(
                PayoutItem.entry_id.in_(entry_ids), PayoutItem.holding == 1
            )
        )
    )


def paid_and_held_sums(
    session: Session, workspace_id: str, contact_id: str
) -> dict[str, tuple[int, int]]:
    """Per currency: (paid, in an open batch) of this contact's cash."""
    rows = session.execute(
        select(PayoutLine.currency, PayoutLine.status, func.sum(PayoutItem.amount))
        .join(PayoutItem, PayoutItem.line_id == PayoutLine.id)
        .where(
            PayoutLine.workspace_id == workspace_id,
            PayoutLine.contact_id == contact_id,
            PayoutItem.holding == 1,
        )
        .group_by(PayoutLine.currency, PayoutLine.status)
    ).all()
    out: dict[str, tuple[int, int]] = {}
    for currency, status, amount in rows:
        paid, pending = out.get(currency, (0, 0))
        if status == "paid":
            paid += int(amount)
        else:
            pending += int(amount)
        out[currency] = (paid, pending)
    return out
