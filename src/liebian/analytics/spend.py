"""Recording spend and spreading it over a query range (pro rata by day)."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from pydantic import Field, model_validator
from sqlalchemy import select
from sqlalchemy.orm import Session

from liebian.analytics.models import ChannelSpend
from liebian.analytics.schemas import SpendRow
from liebian.kit.auth import Principal, Role
from liebian.kit.errors import Invalid, NotFound
from liebian.kit.ids import new_id
from liebian.kit.schemas import OutModel, StrictModel


class SpendIn(StrictModel):
    channel: str = Field(min_length=1, max_length=64)
    period_start: date
    period_end: date
    amount: int = Field(ge=0, le=10**13, description="minor units (分)")
    currency: str = Field(default="CNY", pattern=r"^[A-Z]{3}$")
    note: str = Field(default="", max_length=500)

    @model_validator(mode="after")
    def _ordered(self) -> SpendIn:
        if self.period_end < self.period_start:
            raise ValueError("period_end must be on or after period_start")
        return self


class SpendOut(OutModel):
    id: str
    channel: str
    period_start: date
    period_end: date
    amount: int
    currency: str
    note: str


def record(session: Session, actor: Principal, data: SpendIn) -> ChannelSpend:
    actor.require(Role.operator)
    row = ChannelSpend(id=new_id("spd"), workspace_id=actor.workspace_id, **data.model_dump())
    session.add(row)
    session.flush()
    return row


def delete(session: Session, actor: Principal, spend_id: str) -> None:
    actor.require(Role.operator)
    row = session.scalars(
        select(ChannelSpend).where(
            ChannelSpend.workspace_id == actor.workspace_id, ChannelSpend.id == spend_id
        )
    ).first()
    if row is None:
        raise NotFound(f"no spend record '{spend_id}' in this workspace")
    session.delete(row)


def list_spend(session: Session, workspace_id: str) -> list[ChannelSpend]:
    return list(
        session.scalars(
            select(ChannelSpend)
            .where(ChannelSpend.workspace_id == workspace_id)
            .order_by(ChannelSpend.period_start, ChannelSpend.channel)
        )
    )


def spend_in_range(
    session: Session,
    workspace_id: str,
    start: datetime,
    end: datetime,
    tz: str,
    currency: str = "CNY",
) -> list[SpendRow]:
    """Each record's amount spread evenly over its days; the days inside [start, end) count.

    Integer minor units: the remainder of the division goes to the first days, so summing a
    record's share over its whole period gives back exactly its amount.
    """
    zone = ZoneInfo(tz)
    first_day = start.astimezone(zone).date()
    last_day = (end.astimezone(zone) - timedelta(microseconds=1)).date()
    rows = session.scalars(
        select(ChannelSpend).where(
            ChannelSpend.workspace_id == workspace_id,
            ChannelSpend.period_end >= first_day,
            ChannelSpend.period_start <= last_day,
        )
    )
    totals: dict[str, int] = defaultdict(int)
    for row in rows:
        if row.currency != currency:
            raise Invalid(
                f"spend on channel '{row.channel}' is in {row.currency}; this report is in {currency}",
                code="mixed_currency",
            )
        days = (row.period_end - row.period_start).days + 1
        base, remainder = divmod(row.amount, days)
        lo = max(row.period_start, first_day)
        hi = min(row.period_end, last_day)
        for offset in range((lo - row.period_start).days, (hi - row.period_start).days + 1):
            totals[row.channel] += base + (1 if offset < remainder else 0)
    return [SpendRow(channel=channel, amount=amount) for channel, amount in sorted(totals.items())]
