"""All SQL for contacts."""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from liebian.contacts.models import Contact


def insert_ignore(
    session: Session, table: Any, values: dict[str, Any], conflict: list[str]
) -> bool:
    """INSERT … ON CONFLICT DO NOTHING on SQLite and PostgreSQL; True when a row went in.

    Unlike catching IntegrityError this never aborts a PostgreSQL transaction, and a
    concurrent insert of the same key waits for the other to commit and then does nothing.
    """
    stmt = _insert_ignore_stmt(
        session.get_bind().dialect.name, table, tuple(values), tuple(conflict)
    )
    return session.execute(stmt, values).first() is not None


@functools.cache
def _insert_ignore_stmt(
    dialect: str, table: Any, columns: tuple[str, ...], conflict: tuple[str, ...]
) -> Any:
    # Built once per shape and executed with bound values: constructing the statement cost
    # more than running it (conversions from events call this for every purchase/signup).
    make: Any = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}[dialect]
    stmt = make(table).values({c: bindparam(c) for c in columns})
    # RETURNING, not rowcount: psycopg reports -1 for a conflicting INSERT … DO NOTHING.
    pk = next(iter(table.primary_key.columns))
    return stmt.on_conflict_do_nothing(index_elements=list(conflict)).returning(pk)


_BY_EXTERNAL_ID = select(Contact).where(
    Contact.workspace_id == bindparam("ws"), Contact.external_id == bindparam("ext")
)


def by_external_id(session: Session, workspace_id: str, external_id: str) -> Contact | None:
    return session.scalars(_BY_EXTERNAL_ID, {"ws": workspace_id, "ext": external_id}).first()


def by_id(session: Session, workspace_id: str, contact_id: str) -> Contact | None:
    return session.scalars(
        select(Contact).where(Contact.workspace_id == workspace_id, Contact.id == contact_id)
    ).first()


def by_ids(session: Session, ids: set[str]) -> dict[str, Contact]:
    if not ids:
        return {}
    return {c.id: c for c in session.scalars(select(Contact).where(Contact.id.in_(ids)))}


def ids_by_external_id(
    session: Session, workspace_id: str, external_ids: set[str]
) -> dict[str, str]:
    """external_id → contact id for those that exist (one query per 500 ids)."""
    found: dict[str, str] = {}
    wanted = sorted(external_ids)
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        found.update(
            session.execute(
                select(Contact.external_id, Contact.id).where(
                    Contact.workspace_id == workspace_id, Contact.external_id.in_(chunk)
                )
            ).all()
        )
    return found


@functools.cache
def _insert_contacts_stmt(dialect: str) -> Any:
    make: Any = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}[dialect]
    table = Contact.__table__
    return (
        make(table)
        .on_conflict_do_nothing(index_elements=["workspace_id", "external_id"])
        .returning(table.c.external_id, table.c.id)
    )


def insert_missing(session: Session, rows: list[dict[str, Any]]) -> dict[str, str]:
    """Insert contacts (ON CONFLICT DO NOTHING); external_id → id of those that went in."""
    if not rows:
        return {}
    stmt = _insert_contacts_stmt(session.get_bind().dialect.name)
    return {str(ext): str(cid) for ext, cid in session.execute(stmt, rows)}
