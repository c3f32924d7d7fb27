"""All SQL of the WeCom connector."""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from liebian.connectors.wecom.models import (
    WecomConnection,
    WecomFollow,
    WecomMassSend,
    WecomMonthlyReceipt,
)


def insert_ignore(
    session: Session, table: Any, values: dict[str, Any], conflict: list[str]
) -> bool:
    """INSERT … ON CONFLICT DO NOTHING (SQLite and PostgreSQL); True when the row went in.
    A concurrent insert of the same key waits for the other transaction, then does nothing,
    and never aborts a PostgreSQL transaction the way a caught IntegrityError would."""
    stmt = _insert_ignore_stmt(
        session.get_bind().dialect.name, table, tuple(values), tuple(conflict)
    )
    return session.execute(stmt, values).first() is not None


@functools.cache
def _insert_ignore_stmt(
    dialect: str, table: Any, columns: tuple[str, ...], conflict: tuple[str, ...]
) -> Any:
    make: Any = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}[dialect]
    stmt = make(table).values({c: bindparam(c) for c in columns})
    pk = next(iter(table.primary_key.columns))
    return stmt.on_conflict_do_nothing(index_elements=list(conflict)).returning(pk)


def connection_of(session: Session, workspace_id: str) -> WecomConnection | None:
    return session.scalar(
        select(WecomConnection).where(WecomConnection.workspace_id == workspace_id)
    )


def connection_by_id(session: Session, connection_id: str) -> WecomConnection | None:
    return session.get(WecomConnection, connection_id)


def follow(
    session: Session, workspace_id: str, external_userid: str, staff_userid: str
) -> WecomFollow | None:
    return session.get(WecomFollow, (workspace_id, external_userid, staff_userid))


def follow_by_welcome_code(session: Session, workspace_id: str, code: str) -> WecomFollow | None:
    return session.scalar(
        select(WecomFollow).where(
            WecomFollow.workspace_id == workspace_id, WecomFollow.welcome_code == code
        )
    )


def active_follows_of_contact(
    session: Session, workspace_id: str, contact_id: str
) -> list[WecomFollow]:
    return list(
        session.scalars(
            select(WecomFollow).where(
                WecomFollow.workspace_id == workspace_id,
                WecomFollow.contact_id == contact_id,
                WecomFollow.status == "active",
            )
        )
    )


def reserve_receipt(
    session: Session, workspace_id: str, external_userid: str, month: str, cap: int
) -> bool:
    """Count one mass message for the customer this month unless the cap is reached: one
    conditional UPDATE, so concurrent sends can never push a customer past the cap."""
    insert_ignore(
        session,
        WecomMonthlyReceipt.__table__,
        {"workspace_id": workspace_id, "external_userid": external_userid, "month": month,
         "count": 0},
        ["workspace_id", "external_userid", "month"],
    )  # fmt: skip
    result = session.execute(
        update(WecomMonthlyReceipt)
        .where(
            WecomMonthlyReceipt.workspace_id == workspace_id,
            WecomMonthlyReceipt.external_userid == external_userid,
            WecomMonthlyReceipt.month == month,
            WecomMonthlyReceipt.count < cap,
        )
        .values(count=WecomMonthlyReceipt.count + 1)
    )
    return bool(getattr(result, "rowcount", 0) == 1)


def reserve_recipients(
    session: Session,
    row_id: str,
    workspace_id: str,
    recipients: list[str],
    month: str,
    cap: int,
    noun: str,
) -> WecomMassSend:
    """Count the mass send ``row_id`` against each recipient's monthly cap (customers or
    customer groups): those under it become its recipients, the rest ``over_cap``; with none
    left the send is refused."""
    reserved = [r for r in recipients if reserve_receipt(session, workspace_id, r, month, cap)]
    taken = set(reserved)
    row = session.get(WecomMassSend, row_id)
    assert row is not None
    row.recipients, row.over_cap = reserved, [r for r in recipients if r not in taken]
    if not reserved:
        row.status = "refused"
        row.errmsg = (
            f"every {noun} already received {cap} mass messages in {month} (WeCom's monthly cap)"
        )
    return row


def release_receipts(
    session: Session, workspace_id: str, external_userids: list[str], month: str
) -> None:
    if not external_userids:
        return
    session.execute(
        update(WecomMonthlyReceipt)
        .where(
            WecomMonthlyReceipt.workspace_id == workspace_id,
            WecomMonthlyReceipt.external_userid.in_(external_userids),
            WecomMonthlyReceipt.month == month,
            WecomMonthlyReceipt.count > 0,
        )
        .values(count=WecomMonthlyReceipt.count - 1)
    )


def receipts(
    session: Session, workspace_id: str, external_userids: list[str], month: str
) -> dict[str, int]:
    rows = session.execute(
        select(WecomMonthlyReceipt.external_userid, WecomMonthlyReceipt.count).where(
            WecomMonthlyReceipt.workspace_id == workspace_id,
            WecomMonthlyReceipt.external_userid.in_(external_userids),
            WecomMonthlyReceipt.month == month,
        )
    )
    return {user: count for user, count in rows}
