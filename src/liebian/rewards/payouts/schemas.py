"""Payout batch requests and replies."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from liebian.kit.schemas import StrictModel

MAX_AMOUNT = 100_000_000


class BatchCreate(StrictModel):
    campaign_id: str | None = Field(
        default=None, max_length=40, description="only this campaign's cash; omit for all"
    )
    currency: str | None = Field(default=None, pattern=r"^[A-Z]{3}$")
    min_amount: int = Field(
        default=0,
        ge=0,
        le=MAX_AMOUNT,
        description=(
            "a line pays at least this much (分); a distribution campaign's min_withdrawal "
            "applies on top, whichever is higher"
        ),
    )
    note: str = Field(default="", max_length=200)
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=200)


class LineOut(BaseModel):
    id: str
    batch_id: str
    external_id: str | None
    campaign_id: str | None
    currency: str
    amount: int = Field(description="分, net of debits")
    amount_yuan: str
    entry_count: int
    status: Literal["pending", "paid", "failed"]
    reference: str | None
    failure_reason: str | None
    decided_at: datetime | None


class BatchOut(BaseModel):
    id: str
    status: Literal["open", "closed"]
    idempotency_key: str
    campaign_id: str | None
    currency: str | None
    min_amount: int
    note: str
    line_count: int
    totals: dict[str, int] = Field(description="分 per currency")
    lines_pending: int
    lines_paid: int
    lines_failed: int
    created_at: datetime
    exported_at: datetime | None
    export_count: int
    closed_at: datetime | None


class BatchPage(BaseModel):
    items: list[BatchOut]
    next_cursor: str | None = None


class LinePage(BaseModel):
    items: list[LineOut]
    next_cursor: str | None = None


class Outcome(StrictModel):
    line_id: str = Field(min_length=1, max_length=40)
    outcome: Literal["paid", "failed"]
    reference: str | None = Field(
        default=None, max_length=128, description="the transfer's id at the bank / WeChat Pay"
    )
    reason: str | None = Field(default=None, max_length=200, description="why it failed")


class OutcomesIn(StrictModel):
    lines: list[Outcome] = Field(default_factory=list, max_length=10_000)
    all_pending: Literal["paid"] | None = Field(
        default=None, description="mark every line still pending as paid"
    )
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=200)


class OutcomesResult(BaseModel):
    batch: BatchOut
    changed: int
    unchanged: int


class PreviewLine(BaseModel):
    external_id: str | None
    campaign_id: str | None
    currency: str
    amount: int
    entry_count: int
    min_amount: int
    eligible: bool


class PreviewOut(BaseModel):
    lines: list[PreviewLine]
    eligible_lines: int
    totals: dict[str, int]
