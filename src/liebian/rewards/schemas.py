"""Response models of the rewards ledger API (what ``/openapi.json`` promises)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field

from liebian.kit.schemas import OutModel


class RewardOut(OutModel):
    id: str
    campaign_id: str | None
    external_id: str | None = Field(description="the person's external id")
    kind: str = Field(description="coupon, points, gift or cash")
    name: str
    amount: int = Field(description="integer 分 for cash and coupons; points or units otherwise")
    currency: str
    status: str = Field(description="pending, approved, issued or reversed")
    reason: str
    coupon_code: str | None
    referral_id: str | None
    order_id: str | None
    idempotency_key: str
    available_at: datetime | None
    created_at: datetime
    approved_at: datetime | None
    issued_at: datetime | None
    reversed_at: datetime | None
    reversal_reason: str | None
    meta: dict[str, Any] | None


class RewardMoved(RewardOut):
    changed: bool = Field(description="false when the entry was in that state already")


class RewardPage(OutModel):
    items: list[RewardOut]
    next_cursor: str | None = None


class BalanceOut(OutModel):
    kind: str
    currency: str
    pending: int
    approved: int
    issued: int
    total: int
    paid: int = Field(description="of the issued cash: paid out in payout batches")
    in_payout: int = Field(description="of the issued cash: in a batch not reported yet")


class BalancesOut(OutModel):
    external_id: str
    balances: list[BalanceOut]


class SettleOut(OutModel):
    approved: int
    issued: int
