"""Tags on contacts: groups, tags, manual/bulk tagging, and the change history.

``add_tags`` / ``remove_tags`` are the one way a contact's tags change (the API, CSV import,
bulk tagging and ``segments``' rule tags all call them): each records a ``tag_changes`` row per
contact and tag that actually changed and publishes ``contact.tags_changed`` after commit
(payload: workspace_id, contact_ids, tag_ids, change), which webhooks, segments and journeys
react to. Callers pass ids already scoped to the workspace; unknown tags are a 422.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import delete, func, insert, select, text, tuple_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from liebian.contacts.models import TAG_SOURCES, Contact, ContactTag, Tag, TagChange, TagGroup
from liebian.events import sink as event_sink
from liebian.kit.bus import publish_after_commit
from liebian.kit.clock import utcnow
from liebian.kit.db import pg_array
from liebian.kit.errors import Conflict, Invalid, NotFound
from liebian.kit.ids import new_id

TAGS_CHANGED = "contact.tags_changed"
_CHUNK = 500


def _chunks(values: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(values), _CHUNK):
        yield values[start : start + _CHUNK]


def _check(session: Session, workspace_id: str, tag_ids: Sequence[str], source: str) -> list[Tag]:
    if source not in TAG_SOURCES:
        raise ValueError(f"unknown tag source {source!r}")
    wanted = list(dict.fromkeys(tag_ids))
    tags = list(
        session.scalars(select(Tag).where(Tag.workspace_id == workspace_id, Tag.id.in_(wanted)))
    )
    missing = sorted(set(wanted) - {t.id for t in tags})
    if missing:
        raise Invalid(
            f"no tag {missing[0]!r} in this workspace",
            code="tag_not_found",
            details={"field": "tag_ids", "missing": missing},
        )
    if source != "rule":
        rule = [t.name for t in tags if t.kind == "rule"]
        if rule:
            raise Conflict(
                f"tag {rule[0]!r} is a rule tag: its condition decides who has it",
                code="rule_tag",
                details={"field": "tag_ids"},
            )
    return tags


def _existing(
    session: Session, contact_ids: Sequence[str], tag_ids: Sequence[str]
) -> set[tuple[str, str]]:
    have: set[tuple[str, str]] = set()
    for chunk in _chunks(contact_ids):
        rows = session.execute(
            select(ContactTag.contact_id, ContactTag.tag_id).where(
                ContactTag.contact_id.in_(chunk), ContactTag.tag_id.in_(tag_ids)
            )
        )
        have.update((c, t) for c, t in rows)
    return have


def add_tags(
    session: Session,
    workspace_id: str,
    contact_ids: Sequence[str],
    tag_ids: Sequence[str],
    source: str = "manual",
    reason: str = "",
) -> int:
    """Tag every contact with every tag; returns how many (contact, tag) pairs were new."""
    tags = _check(session, workspace_id, tag_ids, source)
    ids = [t.id for t in tags]
    contacts = list(dict.fromkeys(contact_ids))
    now = utcnow()
    if session.get_bind().dialect.name == "postgresql":
        new = _add_pg(session, workspace_id, contacts, tags, source, (reason or source)[:200], now)
        _announce(session, workspace_id, new, "added")
        return len(new)
    have = _existing(session, contacts, ids)
    new = [(c, t) for c in contacts for t in ids if (c, t) not in have]
    if new:
        # ON CONFLICT DO NOTHING: a concurrent tagging of the same pair is not an error.
        session.execute(
            _insert_links_stmt(session.get_bind().dialect.name),
            [
                {"workspace_id": workspace_id, "contact_id": c, "tag_id": t, "source": source,
                 "added_at": now}
                for c, t in new
            ],
        )  # fmt: skip
        changes = [
            _Change(new_id("tgc"), workspace_id, c, t, "added", (reason or source)[:200], now)
            for c, t in new
        ]
        _insert_changes(session, changes)
        _record_events(session, changes, tags)
    _announce(session, workspace_id, new, "added")
    return len(new)


@functools.cache
@functools.cache
def _add_pg_stmt() -> Any:
    return text(
        """
WITH v AS (
    SELECT * FROM unnest(CAST(:ids AS text[]), CAST(:contacts AS text[]), CAST(:tags AS text[]))
        AS v(id, contact_id, tag_id)
), linked AS (
    INSERT INTO contact_tags (workspace_id, contact_id, tag_id, source, added_at)
    SELECT :ws, v.contact_id, v.tag_id, :source, CAST(:now AS timestamptz) FROM v
    ON CONFLICT (contact_id, tag_id) DO NOTHING
    RETURNING contact_id, tag_id
), changed AS (
    INSERT INTO tag_changes (id, workspace_id, contact_id, tag_id, change, reason, at)
    SELECT v.id, :ws, v.contact_id, v.tag_id, 'added', :reason, CAST(:now AS timestamptz)
    FROM v JOIN linked AS l ON l.contact_id = v.contact_id AND l.tag_id = v.tag_id
    RETURNING id, contact_id, tag_id
)
SELECT c.id, c.contact_id, c.tag_id, p.external_id
FROM changed AS c LEFT JOIN contacts AS p ON p.id = c.contact_id
"""
    )


def _add_pg(
    session: Session,
    workspace_id: str,
    contacts: Sequence[str],
    tags: Sequence[Tag],
    source: str,
    reason: str,
    now: datetime,
) -> list[tuple[str, str]]:
    """PostgreSQL: the links, the change rows and the people's external ids (for the events)
    in one statement per chunk; a pair already tagged, or tagged concurrently, is skipped by
    the insert itself (ON CONFLICT), not by a read before it. The (contact, tag) pairs new."""
    stmt = _add_pg_stmt()
    new: list[tuple[str, str]] = []
    changes: list[_Change] = []
    people: dict[str, str | None] = {}
    ids = [t.id for t in tags]
    for chunk in _chunks(contacts):
        pairs = [(c, t) for c in chunk for t in ids]
        # Array literals, not lists: psycopg dumps a list element by element in Python.
        got = session.execute(stmt, {
            "ids": pg_array([new_id("tgc") for _ in pairs]),
            "contacts": pg_array([c for c, _ in pairs]), "tags": pg_array([t for _, t in pairs]),
            "ws": workspace_id, "source": source, "reason": reason, "now": now,
        })  # fmt: skip
        for change_id, contact_id, tag_id, external_id in got:
            new.append((contact_id, tag_id))
            people[contact_id] = external_id
            changes.append(
                _Change(change_id, workspace_id, contact_id, tag_id, "added", reason, now)
            )
    _record_events(session, changes, tags, people)
    return new


@functools.cache
def _insert_links_stmt(dialect: str) -> Any:
    make: Any = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}[dialect]
    return make(ContactTag.__table__).on_conflict_do_nothing(
        index_elements=["contact_id", "tag_id"]
    )


def remove_tags(
    session: Session,
    workspace_id: str,
    contact_ids: Sequence[str],
    tag_ids: Sequence[str],
    source: str = "manual",
    reason: str = "",
) -> int:
    """Untag; returns how many (contact, tag) pairs were removed."""
    tags = _check(session, workspace_id, tag_ids, source)
    ids = [t.id for t in tags]
    contacts = list(dict.fromkeys(contact_ids))
    gone = sorted(_existing(session, contacts, ids))
    now = utcnow()
    for start in range(0, len(gone), _CHUNK):
        pairs = gone[start : start + _CHUNK]
        session.execute(
            delete(ContactTag).where(tuple_(ContactTag.contact_id, ContactTag.tag_id).in_(pairs))
        )
    changes = [
        _Change(new_id("tgc"), workspace_id, c, t, "removed", (reason or source)[:200], now)
        for c, t in gone
    ]
    _insert_changes(session, changes)
    _record_events(session, changes, tags)
    _announce(session, workspace_id, gone, "removed")
    return len(gone)


class _Change(NamedTuple):
    """A ``tag_changes`` row as written (plain: a bulk tagging of thousands of people costs
    ~250 µs a row through the ORM's unit of work, a few µs as one executemany)."""

    id: str
    workspace_id: str
    contact_id: str
    tag_id: str
    change: str
    reason: str
    at: datetime


def _insert_changes(session: Session, changes: Sequence[_Change]) -> None:
    if changes:
        session.execute(insert(TagChange), [c._asdict() for c in changes])


def _record_events(
    session: Session,
    changes: Sequence[_Change],
    tags: Sequence[Tag],
    people: dict[str, str | None] | None = None,
) -> None:
    """Each change is also an event (``tag_added`` / ``tag_removed``, the contact's external
    id as user_id, id ``tg:<change id>``), written when the transaction commits, so funnels,
    retention and breakdowns work on tagging (events/sink.py). ``people``: the external ids,
    when the caller already read them."""
    if not changes or not event_sink.installed(session):
        return
    names = {t.id: t.name for t in tags}
    if people is None:
        people = {}
        ids = sorted({c.contact_id for c in changes})
        for chunk in _chunks(ids):
            rows = session.execute(
                select(Contact.id, Contact.external_id).where(Contact.id.in_(chunk))
            ).all()
            people.update((contact_id, external_id) for contact_id, external_id in rows)
    data = b"".join(
        event_sink.event_line(
            workspace_id=c.workspace_id, event=f"tag_{c.change}", event_id=f"tg:{c.id}", ts=c.at,
            user_id=people.get(c.contact_id),
            properties={"tag_id": c.tag_id, "tag": names.get(c.tag_id), "reason": c.reason},
        )
        for c in changes
    )  # fmt: skip
    event_sink.emit_after_commit(session, data)


def _announce(
    session: Session, workspace_id: str, pairs: Sequence[tuple[str, str]], change: str
) -> None:
    if not pairs:
        return
    session.flush()
    publish_after_commit(
        session,
        TAGS_CHANGED,
        {
            "workspace_id": workspace_id,
            "contact_ids": sorted({c for c, _ in pairs}),
            "tag_ids": sorted({t for _, t in pairs}),
            "change": change,
        },
    )


# -- groups and tags (CRUD) --------------------------------------------------------------------


def create_group(session: Session, workspace_id: str, name: str) -> TagGroup:
    if session.scalar(
        select(TagGroup.id).where(TagGroup.workspace_id == workspace_id, TagGroup.name == name)
    ):
        raise Conflict(
            f"a tag group named {name!r} exists", code="tag_group_exists", details={"field": "name"}
        )
    group = TagGroup(id=new_id("tgg"), workspace_id=workspace_id, name=name, created_at=utcnow())
    session.add(group)
    session.flush()
    return group


def get_group(session: Session, workspace_id: str, group_id: str) -> TagGroup:
    group = session.get(TagGroup, group_id)
    if group is None or group.workspace_id != workspace_id:
        raise NotFound(
            f"no tag group {group_id!r}", code="tag_group_not_found", details={"field": "group_id"}
        )
    return group


def list_groups(session: Session, workspace_id: str) -> list[tuple[TagGroup, int]]:
    counts = dict(
        session.execute(
            select(Tag.group_id, func.count())
            .where(Tag.workspace_id == workspace_id, Tag.group_id.is_not(None))
            .group_by(Tag.group_id)
        ).all()
    )
    groups = session.scalars(
        select(TagGroup).where(TagGroup.workspace_id == workspace_id).order_by(TagGroup.name)
    )
    return [(g, int(counts.get(g.id, 0))) for g in groups]


def rename_group(session: Session, workspace_id: str, group_id: str, name: str) -> TagGroup:
    group = get_group(session, workspace_id, group_id)
    if name != group.name:
        if session.scalar(
            select(TagGroup.id).where(TagGroup.workspace_id == workspace_id, TagGroup.name == name)
        ):
            raise Conflict(
                f"a tag group named {name!r} exists",
                code="tag_group_exists",
                details={"field": "name"},
            )
        group.name = name
    return group


def delete_group(session: Session, workspace_id: str, group_id: str) -> None:
    group = get_group(session, workspace_id, group_id)
    # Its tags stay, ungrouped (the FK is SET NULL; done here too for SQLite without FKs on).
    for tag in session.scalars(select(Tag).where(Tag.group_id == group.id)):
        tag.group_id = None
    session.delete(group)


def create_tag(
    session: Session, workspace_id: str, name: str, color: str, group_id: str | None
) -> Tag:
    group_id = group_id or None  # "" is no group, like null (was a foreign-key 500)
    if group_id:
        get_group(session, workspace_id, group_id)
    _unique_name(session, workspace_id, name)
    tag = Tag(
        id=new_id("tag"), workspace_id=workspace_id, group_id=group_id, name=name,
        color=color.lower(), kind="manual", created_at=utcnow(),
    )  # fmt: skip
    session.add(tag)
    session.flush()
    return tag


def _unique_name(session: Session, workspace_id: str, name: str) -> None:
    if session.scalar(select(Tag.id).where(Tag.workspace_id == workspace_id, Tag.name == name)):
        raise Conflict(f"a tag named {name!r} exists", code="tag_exists", details={"field": "name"})


def get_tag(session: Session, workspace_id: str, tag_id: str) -> Tag:
    tag = session.get(Tag, tag_id)
    if tag is None or tag.workspace_id != workspace_id:
        raise NotFound(f"no tag {tag_id!r}", code="tag_not_found", details={"field": "tag_id"})
    return tag


def list_tags(
    session: Session, workspace_id: str, group_id: str | None = None
) -> list[tuple[Tag, int]]:
    counts = dict(
        session.execute(
            select(ContactTag.tag_id, func.count())
            .where(ContactTag.workspace_id == workspace_id)
            .group_by(ContactTag.tag_id)
        ).all()
    )
    stmt = select(Tag).where(Tag.workspace_id == workspace_id).order_by(Tag.name)
    if group_id:
        stmt = stmt.where(Tag.group_id == group_id)
    return [(t, int(counts.get(t.id, 0))) for t in session.scalars(stmt)]


def patch_tag(
    session: Session,
    workspace_id: str,
    tag_id: str,
    *,
    name: str | None,
    color: str | None,
    group_id: str | None,
    group_given: bool,
) -> Tag:
    tag = get_tag(session, workspace_id, tag_id)
    if name is not None and name != tag.name:
        _unique_name(session, workspace_id, name)
        tag.name = name
    if color is not None:
        tag.color = color.lower()
    if group_given:
        group_id = group_id or None
        if group_id:
            get_group(session, workspace_id, group_id)
        tag.group_id = group_id
    return tag


def delete_tag(session: Session, workspace_id: str, tag_id: str) -> int:
    """Delete a tag; its holders lose it (recorded and announced like any removal)."""
    tag = get_tag(session, workspace_id, tag_id)
    holders = list(
        session.scalars(select(ContactTag.contact_id).where(ContactTag.tag_id == tag.id))
    )
    removed = 0
    if holders:
        removed = remove_tags(
            session, workspace_id, holders, [tag.id], source=tag.kind, reason="tag deleted"
        )
    session.delete(tag)
    return removed


def contacts_by_refs(
    session: Session, workspace_id: str, contact_ids: Sequence[str], external_ids: Sequence[str]
) -> list[str]:
    """Resolve a bulk request's ids and external ids to contact ids; unknown ones are a 422
    listing them (nothing is tagged)."""
    found: dict[str, str] = {}
    for chunk in _chunks(list(dict.fromkeys(contact_ids))):
        found.update(
            (cid, cid)
            for (cid,) in session.execute(
                select(Contact.id).where(
                    Contact.workspace_id == workspace_id, Contact.id.in_(chunk)
                )
            )
        )
    missing_ids = [c for c in dict.fromkeys(contact_ids) if c not in found]
    by_ext: dict[str, str] = {}
    for chunk in _chunks(list(dict.fromkeys(external_ids))):
        by_ext.update(
            (ext, cid)
            for cid, ext in session.execute(
                select(Contact.id, Contact.external_id).where(
                    Contact.workspace_id == workspace_id, Contact.external_id.in_(chunk)
                )
            )
        )
    missing_ext = [e for e in dict.fromkeys(external_ids) if e not in by_ext]
    if missing_ids or missing_ext:
        field = "contact_ids" if missing_ids else "external_ids"
        first = (missing_ids or missing_ext)[0]
        raise Invalid(
            f"no contact {first!r} in this workspace ({len(missing_ids) + len(missing_ext)} "
            "unknown); nothing was tagged",
            code="contact_not_found",
            details={"field": field, "missing_ids": missing_ids[:100],
                     "missing_external_ids": missing_ext[:100]},
        )  # fmt: skip
    return list(dict.fromkeys([*found.values(), *by_ext.values()]))
