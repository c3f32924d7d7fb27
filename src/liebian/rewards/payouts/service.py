"""Payout batches: settled cash is paid once.

A batch takes every settled (issued), unpaid cash entry, grouped per payee, campaign and
currency into lines, keeps the lines that reach the minimum (the campaign's
``min_withdrawal`` or the batch's ``min_amount``, whichever is higher), and holds their
entries (``payout_items``, unique per live entry). Finance downloads the batch as CSV and
reports each line paid or failed; a failed line lets its entries go to the next batch. A
reversal of a held entry does not touch the entry: it writes a debit (a negative issued
entry) that the next batch nets out. Decision 0019.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from liebian.campaigns.models import Campaign
from liebian.contacts.models import Contact
from liebian.kit.auth import Principal
from liebian.kit.clock import utcnow
from liebian.kit.csv_safe import neutralize
from liebian.kit.errors import Conflict, Invalid, NotFound
from liebian.kit.ids import new_id
from liebian.kit.pagination import paginate
from liebian.rewards.payouts import repository as repo
from liebian.rewards.payouts.models import PayoutBatch, PayoutLine
from liebian.rewards.payouts.schemas import (
    BatchCreate,
    BatchOut,
    LineOut,
    OutcomesIn,
    PreviewLine,
    PreviewOut,
)


def yuan(fen: int) -> str:
    sign = "-" if fen < 0 else ""
    whole, cents = divmod(abs(fen), 100)
    return f"{sign}{whole}.{cents:02d}"


def _minimums(session: Session, workspace_id: str, campaign_ids: set[str]) -> dict[str, int]:
    """Each campaign's own floor per line: a distribution campaign's ``min_withdrawal``."""
    if not campaign_ids:
        return {}
    rows = session.execute(
        select(Campaign.id, Campaign.type, Campaign.config).where(
            Campaign.workspace_id == workspace_id, Campaign.id.in_(campaign_ids)
        )
    ).all()
    out: dict[str, int] = {}
    for campaign_id, kind, config in rows:
        value = (config or {}).get("min_withdrawal", 0) if kind == "distribution" else 0
        out[campaign_id] = int(value or 0)
    return out


@dataclass(frozen=True, slots=True)
class _Group:
    contact_id: str
    campaign_id: str | None
    currency: str
    amount: int
    entries: int
    minimum: int

    @property
    def eligible(self) -> bool:
        return self.amount >= self.minimum


def _groups(
    session: Session,
    workspace_id: str,
    campaign_id: str | None,
    currency: str | None,
    min_amount: int,
) -> list[_Group]:
    rows = repo.unpaid_groups(session, workspace_id, campaign_id, currency)
    floors = _minimums(session, workspace_id, {r[1] for r in rows if r[1]})
    return [
        _Group(c, cmp, cur, amount, n, max(1, min_amount, floors.get(cmp or "", 0)))
        for c, cmp, cur, amount, n in rows
    ]


def _check_campaign(session: Session, workspace_id: str, campaign_id: str | None) -> None:
    if campaign_id is None:
        return
    found = session.scalar(
        select(Campaign.id).where(Campaign.workspace_id == workspace_id, Campaign.id == campaign_id)
    )
    if found is None:
        raise NotFound(
            f"no campaign {campaign_id!r} in this workspace",
            code="campaign_not_found",
            details={"field": "campaign_id"},
        )


def preview(
    session: Session, principal: Principal, campaign_id: str | None, currency: str | None,
    min_amount: int,
) -> PreviewOut:  # fmt: skip
    """What a batch created now would pay, and who is still below the minimum. Writes nothing."""
    _check_campaign(session, principal.workspace_id, campaign_id)
    groups = _groups(session, principal.workspace_id, campaign_id, currency, min_amount)
    external = _external_ids(session, {g.contact_id for g in groups})
    totals: Counter[str] = Counter()
    for g in groups:
        if g.eligible:
            totals[g.currency] += g.amount
    return PreviewOut(
        lines=[
            PreviewLine(
                external_id=external.get(g.contact_id),
                campaign_id=g.campaign_id,
                currency=g.currency,
                amount=g.amount,
                entry_count=g.entries,
                min_amount=g.minimum,
                eligible=g.eligible,
            )
            for g in groups
        ],
        eligible_lines=sum(1 for g in groups if g.eligible),
        totals=dict(totals),
    )


def create_batch(
    session: Session, principal: Principal, body: BatchCreate, key: str
) -> tuple[PayoutBatch, bool]:
    """The batch for ``key`` (created now, or the one an earlier call with it made)."""
    workspace_id = principal.workspace_id
    repo.lock_workspace(session, workspace_id)
    existing = repo.batch_by_key(session, workspace_id, key)
    if existing is not None:
        asked = (body.campaign_id, body.currency, body.min_amount)
        if asked != (existing.campaign_id, existing.currency, existing.min_amount):
            raise Conflict(
                "this Idempotency-Key already made a batch with other parameters; use a new key "
                "for a new batch",
                code="idempotency_key_reused",
                details={"batch_id": existing.id},
            )
        return existing, False
    _check_campaign(session, workspace_id, body.campaign_id)
    groups = _groups(session, workspace_id, body.campaign_id, body.currency, body.min_amount)
    eligible = [g for g in groups if g.eligible]
    if not eligible:
        raise _nothing_to_pay(groups)
    now = utcnow()
    batch = PayoutBatch(
        id=new_id("pob"), workspace_id=workspace_id, idempotency_key=key, status="open",
        campaign_id=body.campaign_id, currency=body.currency, min_amount=body.min_amount,
        note=body.note, created_by=principal.key_id or principal.member_id, created_at=now,
        totals={}, line_count=0, export_count=0,
    )  # fmt: skip
    session.add(batch)
    session.flush()
    minimum_of: dict[str, int] = {}
    lines = []
    for g in eligible:
        line_id = new_id("pol")
        minimum_of[line_id] = g.minimum
        lines.append(
            {
                "id": line_id,
                "workspace_id": workspace_id,
                "batch_id": batch.id,
                "contact_id": g.contact_id,
                "campaign_id": g.campaign_id,
                "currency": g.currency,
                "amount": 0,
                "entry_count": 0,
                "status": "pending",
                "created_at": now,
            }
        )
    session.execute(insert(PayoutLine), lines)
    repo.hold_entries(session, batch.id, workspace_id, body.campaign_id, body.currency)
    repo.refresh_lines(session, batch.id)
    # Entries settled or debited between the grouping and the hold are in the line now; a
    # line a concurrent debit pushed under its minimum waits for the next batch.
    kept: list[PayoutLine] = []
    dropped: list[PayoutLine] = []
    for line in repo.lines_of(session, batch.id):
        (kept if line.amount >= minimum_of[line.id] else dropped).append(line)
    repo.drop_lines(session, [line.id for line in dropped])
    if not kept:
        raise _nothing_to_pay(groups)
    totals: Counter[str] = Counter()
    for line in kept:
        totals[line.currency] += line.amount
    batch.line_count = len(kept)
    batch.totals = dict(totals)
    session.flush()
    return batch, True


def _nothing_to_pay(groups: list[_Group]) -> Conflict:
    below = [g for g in groups if not g.eligible]
    return Conflict(
        "nothing to pay: no payee has settled, unpaid cash at or above the minimum"
        + (f" ({len(below)} below it wait for the next batch)" if below else ""),
        code="nothing_to_pay",
        details={"below_minimum": len(below)},
    )


def get_batch(session: Session, principal: Principal, batch_id: str) -> PayoutBatch:
    batch = repo.batch(session, principal.workspace_id, batch_id)
    if batch is None:
        raise NotFound(f"no payout batch {batch_id!r} in this workspace", code="batch_not_found")
    return batch


def list_batches(
    session: Session, principal: Principal, cursor: str | None, limit: int
) -> list[PayoutBatch]:
    stmt = select(PayoutBatch).where(PayoutBatch.workspace_id == principal.workspace_id)
    return list(session.scalars(paginate(stmt, PayoutBatch.id, cursor, limit)))


def list_lines(
    session: Session, principal: Principal, batch_id: str, cursor: str | None, limit: int,
    status: str | None = None,
) -> list[PayoutLine]:  # fmt: skip
    get_batch(session, principal, batch_id)
    stmt = select(PayoutLine).where(
        PayoutLine.workspace_id == principal.workspace_id, PayoutLine.batch_id == batch_id
    )
    if status:
        stmt = stmt.where(PayoutLine.status == status)
    return list(session.scalars(paginate(stmt, PayoutLine.id, cursor, limit)))


def present_batch(session: Session, batch: PayoutBatch) -> BatchOut:
    counts = dict(
        session.execute(
            select(PayoutLine.status, func.count())
            .where(PayoutLine.batch_id == batch.id)
            .group_by(PayoutLine.status)
        ).all()
    )
    return BatchOut(
        id=batch.id, status=batch.status, idempotency_key=batch.idempotency_key,
        campaign_id=batch.campaign_id, currency=batch.currency, min_amount=batch.min_amount,
        note=batch.note, line_count=batch.line_count,
        totals={k: int(v) for k, v in (batch.totals or {}).items()},
        lines_pending=int(counts.get("pending", 0)), lines_paid=int(counts.get("paid", 0)),
        lines_failed=int(counts.get("failed", 0)), created_at=batch.created_at,
        exported_at=batch.exported_at, export_count=batch.export_count, closed_at=batch.closed_at,
    )  # fmt: skip


def _external_ids(session: Session, contact_ids: set[str]) -> dict[str, str]:
    if not contact_ids:
        return {}
    rows = session.execute(
        select(Contact.id, Contact.external_id).where(Contact.id.in_(contact_ids))
    ).all()
    return {cid: ext for cid, ext in rows}


def present_lines(session: Session, lines: list[PayoutLine]) -> list[LineOut]:
    external = _external_ids(session, {line.contact_id for line in lines})
    return [
        LineOut(
            id=line.id,
            batch_id=line.batch_id,
            external_id=external.get(line.contact_id),
            campaign_id=line.campaign_id,
            currency=line.currency,
            amount=line.amount,
            amount_yuan=yuan(line.amount),
            entry_count=line.entry_count,
            status=line.status,
            reference=line.reference,
            failure_reason=line.failure_reason,
            decided_at=line.decided_at,
        )
        for line in lines
    ]


CSV_COLUMNS = (
    "batch_id",
    "line_id",
    "payee_external_id",
    "campaign_id",
    "currency",
    "amount_fen",
    "amount_yuan",
    "entries",
    "status",
)
# A text cell Excel/WPS will not run as a formula (shared with the contacts export).
safe_cell = neutralize


def export_csv(session: Session, principal: Principal, batch_id: str) -> tuple[str, str]:
    """(file name, CSV text) of the batch. Records the export; the same batch always
    exports the same lines, so downloading it again never adds a payment."""
    batch = get_batch(session, principal, batch_id)
    lines = repo.lines_of(session, batch.id)
    external = _external_ids(session, {line.contact_id for line in lines})
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(CSV_COLUMNS)
    for line in lines:
        writer.writerow(
            [
                batch.id,
                line.id,
                safe_cell(external.get(line.contact_id, "")),
                safe_cell(line.campaign_id or ""),
                line.currency,
                str(line.amount),
                yuan(line.amount),
                str(line.entry_count),
                line.status,
            ]
        )
    now = utcnow()
    if batch.exported_at is None:
        batch.exported_at = now
    batch.export_count = (batch.export_count or 0) + 1
    session.flush()
    # BOM: Excel opens UTF-8 CSV correctly only with it.
    return f"payouts-{batch.id}.csv", "\ufeff" + buf.getvalue()


@dataclass(frozen=True, slots=True)
class OutcomeResult:
    batch: PayoutBatch
    changed: int
    unchanged: int


def record_outcomes(
    session: Session, principal: Principal, batch_id: str, body: OutcomesIn, key: str
) -> OutcomeResult:
    """Mark lines paid or failed, each once. Repeating a request (same or new key) changes
    nothing; reporting the opposite of what a line already is is a 409 and nothing of the
    request is written."""
    batch = get_batch(session, principal, batch_id)
    wanted: dict[str, tuple[str, str | None, str | None]] = {}
    for index, item in enumerate(body.lines):
        if item.line_id in wanted and wanted[item.line_id][0] != item.outcome:
            raise Invalid(
                f"line {item.line_id} is listed twice with different outcomes",
                code="conflicting_outcomes",
                details={"field": f"lines[{index}]"},
            )
        wanted[item.line_id] = (item.outcome, item.reference, item.reason)
    lines = {line.id: line for line in repo.lines_of(session, batch.id)}
    for index, item in enumerate(body.lines):
        if item.line_id not in lines:
            raise Invalid(
                f"line {item.line_id!r} is not in batch {batch.id}",
                code="unknown_line",
                details={"field": f"lines[{index}].line_id"},
            )
    if body.all_pending:
        for line in lines.values():
            if line.status == "pending" and line.id not in wanted:
                wanted[line.id] = (body.all_pending, None, None)
    if not wanted:
        raise Invalid(
            "say which lines were paid or failed: lines=[{line_id, outcome}] or all_pending='paid'",
            code="no_outcomes",
            details={"field": "lines"},
        )
    now = utcnow()
    changed = unchanged = 0
    for line_id, (outcome, reference, reason) in wanted.items():
        values: dict[str, Any] = {"outcome_key": key, "decided_at": now, "reference": reference}
        if outcome == "failed":
            values["failure_reason"] = (reason or "failed")[:200]
        if repo.decide_line(session, batch.id, line_id, outcome, values):
            changed += 1
            continue
        status = session.scalar(select(PayoutLine.status).where(PayoutLine.id == line_id))
        if status != outcome:
            raise Conflict(
                f"line {line_id} is already {status}; it cannot become {outcome}",
                code="line_already_decided",
                details={"line_id": line_id, "status": status},
            )
        unchanged += 1
    if batch.status == "open" and repo.pending_lines(session, batch.id) == 0:
        batch.status = "closed"
        batch.closed_at = now
    session.flush()
    return OutcomeResult(batch=batch, changed=changed, unchanged=unchanged)
