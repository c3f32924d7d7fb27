"""All SQL of the segments domain."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import Select, delete, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from liebian.contacts.models import AttributeDef, Contact, Tag
from liebian.segments.models import Segment, SegmentMember, SegmentMembershipChange, SegmentSize

_CHUNK = 500


def chunks(items: Sequence[Any], size: int = _CHUNK) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


# -- segments ------------------------------------------------------------------------------


def get(
    session: Session, workspace_id: str, segment_id: str, *, lock: bool = False
) -> Segment | None:
    stmt = select(Segment).where(Segment.workspace_id == workspace_id, Segment.id == segment_id)
    if lock:
        stmt = stmt.with_for_update()
    return session.scalars(stmt).first()


def by_name(session: Session, workspace_id: str, name: str) -> Segment | None:
    return session.scalars(
        select(Segment).where(Segment.workspace_id == workspace_id, Segment.name == name)
    ).first()


def list_stmt(workspace_id: str, kind: str | None = None) -> Select[Any]:
    stmt = select(Segment).where(Segment.workspace_id == workspace_id)
    if kind:
        stmt = stmt.where(Segment.kind == kind)
    return stmt


def conditions_of(session: Session, workspace_id: str, ids: Iterable[str]) -> dict[str, Any]:
    """id → stored condition (None for static) of these segments in the workspace."""
    wanted = list(set(ids))
    out: dict[str, Any] = {}
    for part in chunks(wanted):
        rows = session.execute(
            select(Segment.id, Segment.condition).where(
                Segment.workspace_id == workspace_id, Segment.id.in_(part)
            )
        )
        out.update({sid: cond for sid, cond in rows})
    return out


def dynamic_segments(session: Session, workspace_id: str | None = None) -> list[Segment]:
    stmt = select(Segment).where(Segment.kind == "dynamic")
    if workspace_id is not None:
        stmt = stmt.where(Segment.workspace_id == workspace_id)
    return list(session.scalars(stmt.order_by(Segment.id)))


def rule_tags(session: Session, workspace_id: str | None = None) -> list[Tag]:
    stmt = select(Tag).where(Tag.kind == "rule", Tag.condition.is_not(None))
    if workspace_id is not None:
        stmt = stmt.where(Tag.workspace_id == workspace_id)
    return list(session.scalars(stmt.order_by(Tag.id)))


def attribute_types(session: Session, workspace_id: str) -> dict[str, str]:
    rows = session.execute(
        select(AttributeDef.key, AttributeDef.type).where(AttributeDef.workspace_id == workspace_id)
    )
    return {k: t for k, t in rows}


def existing_tags(session: Session, workspace_id: str, ids: Iterable[str]) -> set[str]:
    wanted = list(set(ids))
    if not wanted:
        return set()
    return set(
        session.scalars(select(Tag.id).where(Tag.workspace_id == workspace_id, Tag.id.in_(wanted)))
    )


def _table(name: str) -> Any:
    # Communities' tables by name (communities imports contacts; segments imports neither
    # communities nor its models, so no cycle whichever way it grows).
    from liebian.contacts.references import table

    return table(name)


@dataclass(frozen=True)
class CommunityInfo:
    id: str
    name: str
    tiers: list[dict[str, str]]  # key, name
    groups: list[dict[str, Any]]  # id, name, tier


def communities(
    session: Session, workspace_id: str, ids: Iterable[str] | None = None
) -> dict[str, CommunityInfo]:
    """The workspace's communities (all, or these ids) with their tiers and groups."""
    cmy, grp = _table("communities"), _table("community_groups")
    stmt = select(cmy.c.id, cmy.c.name, cmy.c.tiers).where(cmy.c.workspace_id == workspace_id)
    if ids is not None:
        wanted = list(set(ids))
        if not wanted:
            return {}
        stmt = stmt.where(cmy.c.id.in_(wanted))
    out = {
        cid: CommunityInfo(
            cid,
            name,
            [
                {"key": str(t.get("key")), "name": str(t.get("name") or t.get("key"))}
                for t in (tiers or [])
                if isinstance(t, dict) and t.get("key")
            ],
            [],
        )
        for cid, name, tiers in session.execute(stmt.order_by(cmy.c.name))
    }
    if out:
        rows = session.execute(
            select(grp.c.id, grp.c.name, grp.c.tier, grp.c.community_id)
            .where(grp.c.workspace_id == workspace_id, grp.c.community_id.in_(list(out)))
            .order_by(grp.c.name)
        )
        for gid, name, tier, cid in rows:
            out[cid].groups.append({"id": gid, "name": name, "tier": tier})
    return out


# -- membership ----------------------------------------------------------------------------


def segments_of(session: Session, workspace_id: str, contact_id: str) -> list[dict[str, Any]]:
    """The segments one contact is an effective member of (computed or manual_add, and no
    manual_remove): id, name, kind, source, since — by name."""
    rows = session.execute(
        select(Segment.id, Segment.name, Segment.kind, SegmentMember.source, SegmentMember.since)
        .join(SegmentMember, SegmentMember.segment_id == Segment.id)
        .where(SegmentMember.workspace_id == workspace_id, SegmentMember.contact_id == contact_id)
        .order_by(Segment.name)
    ).all()
    removed = {sid for sid, _n, _k, source, _s in rows if source == "manual_remove"}
    out: dict[str, dict[str, Any]] = {}
    for sid, name, kind, source, since in rows:
        if source == "manual_remove" or sid in removed:
            continue
        seen = out.get(sid)
        if seen is None or (source == "manual_add" and seen["source"] != "manual_add"):
            out[sid] = {"id": sid, "name": name, "kind": kind, "source": source, "since": since}
    return list(out.values())


def member_rows(
    session: Session, segment_id: str, contact_ids: Sequence[str] | None = None
) -> dict[str, set[str]]:
    """source → contact ids of the segment's membership rows (restricted to ``contact_ids``)."""
    out: dict[str, set[str]] = {"computed": set(), "manual_add": set(), "manual_remove": set()}
    base = select(SegmentMember.source, SegmentMember.contact_id).where(
        SegmentMember.segment_id == segment_id
    )
    if contact_ids is None:
        for source, cid in session.execute(base):
            out[source].add(cid)
        return out
    for part in chunks(list(contact_ids)):
        for source, cid in session.execute(base.where(SegmentMember.contact_id.in_(part))):
            out[source].add(cid)
    return out


def add_members(
    session: Session,
    workspace_id: str,
    segment_id: str,
    source: str,
    contact_ids: Iterable[str],
    at: datetime,
) -> None:
    rows = [
        {
            "segment_id": segment_id,
            "contact_id": cid,
            "workspace_id": workspace_id,
            "source": source,
            "since": at,
        }
        for cid in contact_ids
    ]
    for part in chunks(rows, 2000):
        session.execute(insert(SegmentMember), list(part))


def remove_members(
    session: Session, segment_id: str, source: str, contact_ids: Iterable[str]
) -> None:
    for part in chunks(list(contact_ids)):
        session.execute(
            delete(SegmentMember).where(
                SegmentMember.segment_id == segment_id,
                SegmentMember.source == source,
                SegmentMember.contact_id.in_(part),
            )
        )


def clear_members(session: Session, segment_id: str, source: str | None = None) -> None:
    stmt = delete(SegmentMember).where(SegmentMember.segment_id == segment_id)
    if source is not None:
        stmt = stmt.where(SegmentMember.source == source)
    session.execute(stmt)


def record_changes(
    session: Session,
    workspace_id: str,
    segment_id: str,
    change: str,
    contact_ids: Iterable[str],
    cause: str,
    version: int,
    at: datetime,
) -> None:
    rows = [
        {
            "segment_id": segment_id,
            "workspace_id": workspace_id,
            "contact_id": cid,
            "change": change,
            "cause": cause[:200],
            "version": version,
            "at": at,
        }
        for cid in contact_ids
    ]
    for part in chunks(rows, 2000):
        session.execute(insert(SegmentMembershipChange), list(part))


def set_size(session: Session, segment: Segment, size: int, day: date) -> None:
    segment.size = size
    values = {
        "segment_id": segment.id,
        "workspace_id": segment.workspace_id,
        "day": day,
        "size": size,
    }
    dialect = session.get_bind().dialect.name
    make: Any = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}[dialect]
    stmt = make(SegmentSize).values(values)
    session.execute(
        stmt.on_conflict_do_update(index_elements=["segment_id", "day"], set_={"size": size})
    )


def effective_count(session: Session, segment_id: str) -> int:
    rows = member_rows(session, segment_id)
    return len((rows["computed"] | rows["manual_add"]) - rows["manual_remove"])


def members_page(
    session: Session, segment_id: str, after: str | None, limit: int
) -> list[tuple[str, str, str, datetime]]:
    """Effective members ordered by contact id: (contact id, external id, source, since)."""
    removed = select(SegmentMember.contact_id).where(
        SegmentMember.segment_id == segment_id, SegmentMember.source == "manual_remove"
    )
    stmt = (
        select(
            SegmentMember.contact_id,
            Contact.external_id,
            func.min(SegmentMember.source),
            func.min(SegmentMember.since),
        )
        .join(Contact, Contact.id == SegmentMember.contact_id)
        .where(
            SegmentMember.segment_id == segment_id,
            SegmentMember.source.in_(("computed", "manual_add")),
            SegmentMember.contact_id.not_in(removed),
        )
        .group_by(SegmentMember.contact_id, Contact.external_id)
        .order_by(SegmentMember.contact_id)
        .limit(limit + 1)
    )
    if after:
        stmt = stmt.where(SegmentMember.contact_id > after)
    return [(r[0], r[1], r[2], r[3]) for r in session.execute(stmt)]


def history_page(
    session: Session,
    segment_id: str,
    before_id: int | None,
    limit: int,
    contact_id: str | None = None,
) -> list[tuple[SegmentMembershipChange, str | None]]:
    stmt = (
        select(SegmentMembershipChange, Contact.external_id)
        .outerjoin(Contact, Contact.id == SegmentMembershipChange.contact_id)
        .where(SegmentMembershipChange.segment_id == segment_id)
    )
    if contact_id:
        stmt = stmt.where(SegmentMembershipChange.contact_id == contact_id)
    if before_id is not None:
        stmt = stmt.where(SegmentMembershipChange.id < before_id)
    stmt = stmt.order_by(SegmentMembershipChange.id.desc()).limit(limit + 1)
    return [(row[0], row[1]) for row in session.execute(stmt)]


def sizes(session: Session, segment_id: str, since: date) -> list[tuple[date, int]]:
    rows = session.execute(
        select(SegmentSize.day, SegmentSize.size)
        .where(SegmentSize.segment_id == segment_id, SegmentSize.day >= since)
        .order_by(SegmentSize.day)
    )
    return [(d, s) for d, s in rows]


def contact_ids_by_external(
    session: Session, workspace_id: str, external_ids: Sequence[str]
) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in chunks(list(external_ids)):
        rows = session.execute(
            select(Contact.external_id, Contact.id).where(
                Contact.workspace_id == workspace_id, Contact.external_id.in_(part)
            )
        )
        out.update({ext: cid for ext, cid in rows})
    return out


def existing_contacts(session: Session, workspace_id: str, ids: Sequence[str]) -> set[str]:
    out: set[str] = set()
    for part in chunks(list(ids)):
        out.update(
            session.scalars(
                select(Contact.id).where(Contact.workspace_id == workspace_id, Contact.id.in_(part))
            )
        )
    return out


def external_ids(session: Session, ids: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in chunks(list(ids)):
        rows = session.execute(select(Contact.id, Contact.external_id).where(Contact.id.in_(part)))
        out.update({cid: ext for cid, ext in rows})
    return out


def segments_of_contact(session: Session, workspace_id: str, contact_id: str) -> list[Segment]:
    rows = member_sources_for_contact(session, workspace_id, contact_id)
    ids = [
        sid
        for sid, sources in rows.items()
        if sources & {"computed", "manual_add"} and "manual_remove" not in sources
    ]
    if not ids:
        return []
    return list(session.scalars(select(Segment).where(Segment.id.in_(ids)).order_by(Segment.name)))


def member_sources_for_contact(
    session: Session, workspace_id: str, contact_id: str
) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    rows = session.execute(
        select(SegmentMember.segment_id, SegmentMember.source).where(
            SegmentMember.workspace_id == workspace_id, SegmentMember.contact_id == contact_id
        )
    )
    for sid, source in rows:
        out.setdefault(sid, set()).add(source)
    return out


def bump_version(session: Session, segment: Segment) -> int:
    session.execute(
        update(Segment).where(Segment.id == segment.id).values(version=Segment.version + 1)
    )
    session.refresh(segment, ["version"])
    return segment.version
