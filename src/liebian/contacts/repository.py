"""All SQL for contacts."""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert, select
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
    dialect = session.get_bind().dialect.name
    stmt: Any
    if dialect == "postgresql":
        stmt = (
            postgresql.insert(table)
            .values(**values)
            .on_conflict_do_nothing(index_elements=conflict)
        )
    elif dialect == "sqlite":
        stmt = sqlite.insert(table).values(**values).on_conflict_do_nothing(index_elements=conflict)
    else:  # pragma: no cover - only the two supported backends
        stmt = insert(table).values(**values)
    # RETURNING, not rowcount: psycopg reports -1 for a conflicting INSERT … DO NOTHING.
    pk = next(iter(table.primary_key.columns))
    return session.execute(stmt.returning(pk)).first() is not None


def by_external_id(session: Session, workspace_id: str, external_id: str) -> Contact | None:
    return session.scalars(
        select(Contact).where(
            Contact.workspace_id == workspace_id, Contact.external_id == external_id
        )
    ).first()


def by_id(session: Session, workspace_id: str, contact_id: str) -> Contact | None:
    return session.scalars(
        select(Contact).where(Contact.workspace_id == workspace_id, Contact.id == contact_id)
    ).first()


def by_ids(session: Session, ids: set[str]) -> dict[str, Contact]:
    if not ids:
        return {}
    return {c.id: c for c in session.scalars(select(Contact).where(Contact.id.in_(ids)))}
