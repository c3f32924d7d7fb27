"""All SQL for contacts."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import ColumnElement, Select, Table, bindparam, exists, select, union
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from liebian.contacts.models import (
    Contact,
    ContactAlias,
    ContactAttribute,
    ContactTag,
    Tag,
)
from liebian.contacts.references import table
from liebian.contacts.search import SearchTerms
from liebian.kit.precompiled import executemany, fetch_all


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
            fetch_all(
                session,
                select(Contact.external_id, Contact.id).where(
                    Contact.workspace_id == workspace_id, Contact.external_id.in_(chunk)
                ),
            )
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
    """Insert contacts (ON CONFLICT DO NOTHING); external_id → id of those that went in.

    On SQLite without RETURNING (each returned row is a step of its own, with the GIL
    released: kit/precompiled.py): multi-row VALUES; when SQLite counts fewer rows written
    than given (a conflict), the rows holding the new ids tell which went in."""
    if not rows:
        return {}
    dialect = session.get_bind().dialect.name
    if dialect != "sqlite":
        stmt = _insert_contacts_stmt(dialect)
        return {str(ext): str(cid) for ext, cid in session.execute(stmt, rows)}
    if executemany(session, _insert_contacts_plain_stmt(), rows) == len(rows):
        return {row["external_id"]: row["id"] for row in rows}
    contacts = Contact.__table__
    ids = [row["id"] for row in rows]
    went_in: dict[str, str] = {}
    for start in range(0, len(ids), 500):
        went_in.update(
            fetch_all(
                session,
                select(contacts.c.external_id, contacts.c.id).where(
                    contacts.c.id.in_(ids[start : start + 500])
                ),
            )
        )
    return went_in


@functools.cache
def _insert_contacts_plain_stmt() -> Any:
    return sqlite.insert(cast(Table, Contact.__table__)).on_conflict_do_nothing(
        index_elements=["workspace_id", "external_id"]
    )


# -- the contacts list -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ContactFilter:
    tag_ids: tuple[str, ...] = ()
    tag_match: str = "any"  # any | all
    channel: str | None = None
    first_seen_from: datetime | None = None
    first_seen_to: datetime | None = None
    last_seen_from: datetime | None = None
    last_seen_to: datetime | None = None
    campaign_id: str | None = None
    search: SearchTerms | None = None
    # Extra WHERE clauses over Contact from other domains (segments' membership filter).
    extra: tuple[ColumnElement[bool], ...] = ()


def list_stmt(workspace_id: str, f: ContactFilter) -> Select[Contact]:
    stmt = select(Contact).where(
        Contact.workspace_id == workspace_id,
        Contact.merged_into_id.is_(None),
        Contact.erased_at.is_(None),
    )
    if f.tag_ids:
        tagged = select(ContactTag.contact_id).where(
            ContactTag.workspace_id == workspace_id, ContactTag.tag_id.in_(f.tag_ids)
        )
        if f.tag_match == "all":
            for tag_id in f.tag_ids:
                stmt = stmt.where(
                    exists().where(ContactTag.contact_id == Contact.id, ContactTag.tag_id == tag_id)
                )
        else:
            stmt = stmt.where(Contact.id.in_(tagged))
    if f.channel:
        stmt = stmt.where(Contact.first_channel == f.channel)
    for column, low, high in (
        (Contact.first_seen_at, f.first_seen_from, f.first_seen_to),
        (Contact.last_seen_at, f.last_seen_from, f.last_seen_to),
    ):
        if low is not None:
            stmt = stmt.where(column >= low)
        if high is not None:
            stmt = stmt.where(column < high)
    if f.campaign_id:
        participants = table("participants")
        stmt = stmt.where(
            exists().where(
                participants.c.contact_id == Contact.id,
                participants.c.campaign_id == f.campaign_id,
            )
        )
    if f.search is not None:
        t = f.search
        # Each way of matching is an indexed lookup of its own; their union is a handful of
        # ids (an OR across columns would scan the whole workspace in id order instead).
        by_key = select(Contact.id).where(Contact.workspace_id == workspace_id)
        parts = [
            by_key.where(Contact.external_id == t.external_id),
            select(ContactAlias.contact_id).where(
                ContactAlias.workspace_id == workspace_id, ContactAlias.value == t.external_id
            ),
        ]
        if t.phone_hash:
            parts.append(by_key.where(Contact.phone_hash == t.phone_hash))
        if t.email_hash:
            parts.append(by_key.where(Contact.email_hash == t.email_hash))
        if t.nick_column and t.nick_hash:
            parts.append(by_key.where(getattr(Contact, t.nick_column) == t.nick_hash))
        stmt = stmt.where(Contact.id.in_(union(*parts)))
    for clause in f.extra:
        stmt = stmt.where(clause)
    return stmt


def rowcount(result: Any) -> int:
    """Rows an UPDATE/DELETE touched (a CursorResult's rowcount; 0 when unknown)."""
    return max(0, int(getattr(result, "rowcount", 0) or 0))


def tags_of(session: Session, contact_ids: list[str]) -> dict[str, list[tuple[ContactTag, Tag]]]:
    out: dict[str, list[tuple[ContactTag, Tag]]] = {c: [] for c in contact_ids}
    if not contact_ids:
        return out
    rows = session.execute(
        select(ContactTag, Tag)
        .join(Tag, Tag.id == ContactTag.tag_id)
        .where(ContactTag.contact_id.in_(contact_ids))
        .order_by(Tag.name)
    )
    for link, tag in rows:
        out[link.contact_id].append((link, tag))
    return out


def aliases_of(session: Session, contact_id: str) -> list[ContactAlias]:
    return list(
        session.scalars(
            select(ContactAlias)
            .where(ContactAlias.contact_id == contact_id)
            .order_by(ContactAlias.created_at, ContactAlias.kind)
        )
    )


def attributes_of(session: Session, contact_id: str) -> list[ContactAttribute]:
    return list(
        session.scalars(
            select(ContactAttribute)
            .where(ContactAttribute.contact_id == contact_id)
            .order_by(ContactAttribute.key)
        )
    )


def by_alias(session: Session, workspace_id: str, kind: str, value: str) -> Contact | None:
    return session.scalars(
        select(Contact)
        .join(ContactAlias, ContactAlias.contact_id == Contact.id)
        .where(
            ContactAlias.workspace_id == workspace_id,
            ContactAlias.kind == kind,
            ContactAlias.value == value,
        )
    ).first()
