"""Segments: the rules. Check conditions against stored data, preview, build, keep current.

Evaluation reads through a ``reader`` session (the runtime's read-only sessions: on SQLite
they never take the writer lock, and one evaluation reads one snapshot); membership changes are written through the caller's
session, which the request or job boundary commits. Every entry and exit is recorded with
its cause and published after commit as ``segment.entered`` / ``segment.exited``.
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from liebian.events.store.base import EventStore
from liebian.kit.bus import publish_after_commit
from liebian.kit.clock import utcnow
from liebian.kit.db import after_commit
from liebian.kit.errors import Conflict, Invalid, NotFound
from liebian.kit.ids import new_id
from liebian.segments import conditions as c
from liebian.segments import repository
from liebian.segments.evaluation import evaluate
from liebian.segments.models import Segment

ENTERED_TOPIC = "segment.entered"
EXITED_TOPIC = "segment.exited"
SAMPLE_SIZE = 20
MAX_CSV_ROWS = 100_000


# -- conditions against stored data -------------------------------------------------------


def check_condition(
    session: Session, workspace_id: str, data: Any, *, segment_id: str | None = None
) -> c.Condition:
    """``validate`` plus what needs the database: custom attributes get their stored type
    (unknown keys refused), tags and segments must exist in this workspace, and a segment may
    not refer to itself, directly or through others."""
    node = c.validate(data)
    types = repository.attribute_types(session, workspace_id)
    node = c.bind_types(node, types)
    tags = c.referenced_tags(node)
    known = repository.existing_tags(session, workspace_id, tags)
    for leaf in c.walk(node):
        if isinstance(leaf, c.Tags):
            for i, tag in enumerate(leaf.tags):
                if tag not in known:
                    raise c.ConditionInvalid(
                        f"{leaf.path}.tags[{i}]",
                        f"no tag {tag!r} in this workspace; pick one from GET /api/v1/tags",
                        code="unknown_tag",
                    )
    _check_communities(session, workspace_id, node)
    _check_segment_refs(session, workspace_id, node, segment_id)
    return node


def _check_communities(session: Session, workspace_id: str, node: c.Condition) -> None:
    leaves = c.referenced_communities(node)
    named = {leaf.community_id for leaf in leaves if leaf.community_id}
    if not named:
        return
    known = repository.communities(session, workspace_id, named)
    for leaf in leaves:
        if not leaf.community_id:
            continue
        info = known.get(leaf.community_id)
        if info is None:
            raise c.ConditionInvalid(
                f"{leaf.path}.community_id",
                f"no community {leaf.community_id!r} in this workspace;"
                " pick one from GET /api/v1/communities",
                code="unknown_community",
            )
        if leaf.group_id and leaf.group_id not in {g["id"] for g in info.groups}:
            raise c.ConditionInvalid(
                f"{leaf.path}.group_id",
                f"community {info.name!r} has no group {leaf.group_id!r};"
                " pick one of its groups or leave group_id out",
                code="unknown_group",
            )
        tiers = [t["key"] for t in info.tiers]
        if leaf.tier and leaf.tier not in tiers:
            hint = "use one of " + ", ".join(tiers) if tiers else "it has no tiers: leave tier out"
            raise c.ConditionInvalid(
                f"{leaf.path}.tier",
                f"community {info.name!r} has no tier {leaf.tier!r}; {hint}",
                code="unknown_tier",
            )


def _check_segment_refs(
    session: Session, workspace_id: str, node: c.Condition, segment_id: str | None
) -> None:
    refs = [n for n in c.walk(node) if isinstance(n, c.SegmentRef)]
    if not refs:
        return
    for ref in refs:
        if segment_id is not None and ref.segment_id == segment_id:
            raise c.ConditionInvalid(
                f"{ref.path}.segment_id",
                "a segment cannot refer to itself; remove this condition",
                code="segment_cycle",
            )
    stored = repository.conditions_of(session, workspace_id, [r.segment_id for r in refs])
    for ref in refs:
        if ref.segment_id not in stored:
            raise c.ConditionInvalid(
                f"{ref.path}.segment_id",
                f"no segment {ref.segment_id!r} in this workspace",
                code="unknown_segment",
            )
    if segment_id is None:
        return
    # Follow every reference; reaching segment_id again is a cycle through others.
    for ref in refs:
        seen: set[str] = set()
        stack = [ref.segment_id]
        while stack:
            sid = stack.pop()
            if sid in seen:
                continue
            seen.add(sid)
            cond = repository.conditions_of(session, workspace_id, [sid]).get(sid)
            if not cond:
                continue
            try:
                nested = c.referenced_segments(c.validate(cond))
            except c.ConditionInvalid:
                continue
            if segment_id in nested:
                raise c.ConditionInvalid(
                    f"{ref.path}.segment_id",
                    f"segment {ref.segment_id!r} refers back to this segment (through {sid!r});"
                    " a segment cannot contain itself",
                    code="segment_cycle",
                )
            stack.extend(nested)


def member_filter(session: Session, workspace_id: str, segment_id: str) -> Any:
    """A WHERE clause over ``contacts``: members of the segment (the contacts list filter)."""
    from sqlalchemy import select

    from liebian.contacts.models import Contact
    from liebian.segments.models import SegmentMember

    if repository.get(session, workspace_id, segment_id) is None:
        raise Invalid(
            f"no segment {segment_id!r} in this workspace; pick one from GET /api/v1/segments",
            code="unknown_segment",
            details={"field": "segment"},
        )
    sm = SegmentMember
    present = select(sm.contact_id).where(
        sm.segment_id == segment_id, sm.source.in_(("computed", "manual_add"))
    )
    removed = select(sm.contact_id).where(sm.segment_id == segment_id, sm.source == "manual_remove")
    return Contact.id.in_(present) & Contact.id.not_in(removed)


def member_ids(session: Session, workspace_id: str, segment_id: str, limit: int) -> list[str]:
    """The effective members' contact ids (live contacts only); ``Invalid`` naming
    ``segment_id`` when the segment is unknown or holds more than ``limit``."""
    from sqlalchemy import func, select

    from liebian.contacts.models import Contact

    try:
        clause = member_filter(session, workspace_id, segment_id)
    except Invalid as exc:
        raise Invalid(exc.message, code=exc.code, details={"field": "segment_id"}) from None
    stmt = select(Contact.id).where(
        Contact.workspace_id == workspace_id,
        Contact.merged_into_id.is_(None),
        Contact.erased_at.is_(None),
        clause,
    )
    ids = list(session.scalars(stmt.limit(limit + 1)))
    if len(ids) > limit:
        total = session.scalar(stmt.with_only_columns(func.count()).order_by(None)) or 0
        raise Invalid(
            f"the segment has {total} members; at most {limit} can be tagged in one call —"
            " narrow the segment, or make a rule tag with its condition",
            code="too_many_contacts",
            details={"field": "segment_id"},
        )
    return ids


def community_filter(session: Session, workspace_id: str, community_id: str, status: str) -> Any:
    """A WHERE clause over ``contacts``: people in the community in ``status`` (the contacts
    list filter; the same SQL as a ``community`` condition)."""
    from liebian.segments.compilers import state_clause
    from liebian.segments.evaluation import state_tables

    if not repository.communities(session, workspace_id, [community_id]):
        raise Invalid(
            f"no community {community_id!r} in this workspace;"
            " pick one from GET /api/v1/communities",
            code="unknown_community",
            details={"field": "community"},
        )
    node = c.Community("$", community_id, None, None, status, None)
    return state_clause(state_tables(), node, utcnow(), workspace_id)


# -- preview --------------------------------------------------------------------------------


@dataclass
class Preview:
    count: int
    sample: list[tuple[str, str]]  # (contact id, external id)
    took_ms: int
    warnings: list[str] = field(default_factory=list)


def preview(
    session: Session,
    reader: Session,
    store: EventStore | None,
    workspace_id: str,
    data: Any,
    *,
    now: datetime | None = None,
) -> Preview:
    node = check_condition(session, workspace_id, data)
    started = time.perf_counter()
    ids = evaluate(reader, store, workspace_id, node, now=now)
    sample_ids = sorted(ids)[:SAMPLE_SIZE]
    ext = repository.external_ids(reader, sample_ids)
    took = int((time.perf_counter() - started) * 1000)
    warnings = []
    events = c.referenced_events(node)
    if events and store is not None:
        unknown = sorted(e for e in events if not _event_seen(store, workspace_id, e))
        if unknown:
            warnings.append(f"这些事件在本工作区还没有出现过: {', '.join(unknown)}")
    return Preview(len(ids), [(i, ext.get(i, "")) for i in sample_ids], took, warnings)


def _event_seen(store: EventStore, workspace_id: str, event: str) -> bool:
    """Whether the workspace ever recorded ``event`` (stops at the first row, unlike a
    DISTINCT over every event)."""
    from liebian.analytics.sql import Sql

    sql = Sql(store)
    rows = sql.run(
        f"SELECT 1 FROM {sql.events} WHERE workspace_id = {sql.p(workspace_id)}"
        f" AND event = {sql.p(event)} LIMIT 1"
    )
    return bool(rows)


# -- CRUD -----------------------------------------------------------------------------------


def get(session: Session, workspace_id: str, segment_id: str) -> Segment:
    segment = repository.get(session, workspace_id, segment_id)
    if segment is None:
        raise NotFound(f"no segment {segment_id!r} in this workspace", code="segment_not_found")
    return segment


def _check_name(session: Session, workspace_id: str, name: str, own: str | None = None) -> str:
    value = name.strip()
    if not value or len(value) > 100:
        raise Invalid("name must be 1–100 characters", details={"field": "name"})
    other = repository.by_name(session, workspace_id, value)
    if other is not None and other.id != own:
        raise Conflict(
            f"a segment named {value!r} exists already; pick another name",
            code="segment_name_taken",
            details={"field": "name"},
        )
    return value


_conditions_version = [0]


def conditions_version() -> int:
    """Bumped in this process whenever a committed change adds or edits a live condition
    (dynamic segment, rule tag): the keeper then re-reads which events conditions name."""
    return _conditions_version[0]


def _conditions_changed(session: Session) -> None:
    def bump() -> None:
        _conditions_version[0] += 1

    after_commit(session, bump)


def create(
    session: Session,
    reader: Session,
    store: EventStore | None,
    workspace_id: str,
    *,
    name: str,
    kind: str,
    condition: Any = None,
    description: str = "",
    now: datetime | None = None,
) -> Segment:
    name = _check_name(session, workspace_id, name)
    if kind == "dynamic":
        if condition is None:
            raise Invalid("a dynamic segment needs a condition", details={"field": "condition"})
        check_condition(session, workspace_id, condition)
    elif condition is not None:
        raise Invalid(
            "a static segment has no condition; upload members or freeze a dynamic segment",
            details={"field": "condition"},
        )
    at = now or utcnow()
    segment = Segment(
        id=new_id("seg"),
        workspace_id=workspace_id,
        name=name,
        kind=kind,
        condition=condition,
        description=description,
        version=0,
        size=0,
        created_at=at,
        updated_at=at,
    )
    session.add(segment)
    session.flush()
    if kind == "dynamic":
        _conditions_changed(session)
        build(session, reader, store, segment, cause="created", now=at)
    else:
        repository.set_size(session, segment, 0, at.date())
    return segment


def update(
    session: Session,
    reader: Session,
    store: EventStore | None,
    segment: Segment,
    *,
    name: str | None = None,
    description: str | None = None,
    condition: Any = None,
    now: datetime | None = None,
) -> Segment:
    at = now or utcnow()
    if name is not None:
        segment.name = _check_name(session, segment.workspace_id, name, segment.id)
    if description is not None:
        segment.description = description
    rebuild = False
    if condition is not None:
        if segment.kind != "dynamic":
            raise Invalid("a static segment has no condition", details={"field": "condition"})
        check_condition(session, segment.workspace_id, condition, segment_id=segment.id)
        rebuild = condition != segment.condition
        segment.condition = condition
        _conditions_changed(session)
    segment.updated_at = at
    session.flush()
    if rebuild:
        build(session, reader, store, segment, cause="condition_changed", now=at)
    return segment


def delete(session: Session, segment: Segment) -> None:
    dependants = [
        s.id
        for s in repository.dynamic_segments(session, segment.workspace_id)
        if s.condition and segment.id in _refs(s.condition)
    ]
    if dependants:
        raise Conflict(
            f"segment(s) {', '.join(dependants)} use this segment; change them first",
            code="segment_in_use",
            details={"segments": dependants},
        )
    session.delete(segment)


def _refs(cond: Any) -> set[str]:
    try:
        return c.referenced_segments(c.validate(cond))
    except c.ConditionInvalid:
        return set()


# -- building and keeping current --------------------------------------------------------


@dataclass
class Changes:
    segment_id: str
    version: int
    entered: set[str]
    exited: set[str]
    size: int


def _write(
    session: Session,
    segment: Segment,
    computed: set[str],
    scope: Sequence[str] | None,
    cause: str,
    version: int,
    at: datetime,
) -> Changes:
    rows = repository.member_rows(session, segment.id, scope)
    old, adds, removes = rows["computed"], rows["manual_add"], rows["manual_remove"]
    before = (old | adds) - removes
    after = (computed | adds) - removes
    repository.remove_members(session, segment.id, "computed", old - computed)
    repository.add_members(
        session, segment.workspace_id, segment.id, "computed", computed - old, at
    )
    return _record(session, segment, before, after, cause, version, at)


def _record(
    session: Session,
    segment: Segment,
    before: set[str],
    after: set[str],
    cause: str,
    version: int,
    at: datetime,
) -> Changes:
    entered, exited = after - before, before - after
    ws = segment.workspace_id
    repository.record_changes(
        session, ws, segment.id, "entered", sorted(entered), cause, version, at
    )
    repository.record_changes(session, ws, segment.id, "exited", sorted(exited), cause, version, at)
    size = segment.size + len(entered) - len(exited)
    repository.set_size(session, segment, size, at.date())
    for topic, ids in ((ENTERED_TOPIC, entered), (EXITED_TOPIC, exited)):
        if ids:
            publish_after_commit(
                session,
                topic,
                {
                    "workspace_id": ws,
                    "segment_id": segment.id,
                    "contact_ids": sorted(ids),
                    "cause": cause,
                    "version": version,
                    "at": at.isoformat(),
                },
            )
    return Changes(segment.id, version, entered, exited, size)


def build(
    session: Session,
    reader: Session,
    store: EventStore | None,
    segment: Segment,
    *,
    cause: str = "rebuild",
    now: datetime | None = None,
) -> Changes:
    """Full build of a dynamic segment under a new version: evaluate everyone, write the
    difference. Manual add/remove rows are kept."""
    at = now or utcnow()
    started = time.perf_counter()
    try:
        computed = evaluate(reader, store, segment.workspace_id, segment.condition or {}, now=at)
    except Exception as exc:
        segment.build_error = f"{type(exc).__name__}: {exc}"[:500]
        raise
    version = repository.bump_version(session, segment)
    changes = _write(session, segment, computed, None, cause, version, at)
    segment.built_at = at
    segment.build_ms = int((time.perf_counter() - started) * 1000)
    segment.build_error = None
    # the incremental count drifts only if rows changed behind our back: a build resets it
    repository.set_size(
        session, segment, repository.effective_count(session, segment.id), at.date()
    )
    changes.size = segment.size
    return changes


def refresh(
    session: Session,
    reader: Session,
    store: EventStore | None,
    segment: Segment,
    contact_ids: Sequence[str],
    *,
    cause: str,
    now: datetime | None = None,
    cache: dict[Any, Any] | None = None,
) -> Changes:
    """Re-evaluate only ``contact_ids`` against a dynamic segment (incremental); ``cache``
    shares engine answers between the segments of one pass."""
    at = now or utcnow()
    computed = evaluate(
        reader,
        store,
        segment.workspace_id,
        segment.condition or {},
        contact_ids,
        now=at,
        cache=cache,
    )
    scope = list(dict.fromkeys(contact_ids))
    return _write(session, segment, computed, scope, cause, segment.version, at)


# -- static segments and manual changes -----------------------------------------------------


def _manual(
    session: Session,
    segment: Segment,
    contact_ids: Sequence[str],
    source: str,
    cause: str,
    at: datetime,
) -> Changes:
    """Add (manual_add) or remove (manual_remove) contacts by hand; the opposite manual row
    of the same contact is dropped, computed rows stay untouched."""
    known = repository.existing_contacts(session, segment.workspace_id, contact_ids)
    missing = [cid for cid in contact_ids if cid not in known]
    if missing:
        raise Invalid(
            f"no contact(s) {', '.join(missing[:5])} in this workspace",
            code="unknown_contact",
            details={"contact_ids": missing[:50]},
        )
    scope = sorted(known)
    rows = repository.member_rows(session, segment.id, scope)
    before = (rows["computed"] | rows["manual_add"]) - rows["manual_remove"]
    opposite = "manual_remove" if source == "manual_add" else "manual_add"
    repository.remove_members(session, segment.id, opposite, scope)
    repository.add_members(
        session, segment.workspace_id, segment.id, source, set(scope) - rows[source], at
    )
    rows = repository.member_rows(session, segment.id, scope)
    after = (rows["computed"] | rows["manual_add"]) - rows["manual_remove"]
    return _record(session, segment, before, after, cause, segment.version, at)


def add_manual(
    session: Session, segment: Segment, contact_ids: Sequence[str], now: datetime | None = None
) -> Changes:
    return _manual(session, segment, contact_ids, "manual_add", "manual_add", now or utcnow())


def remove_manual(
    session: Session, segment: Segment, contact_ids: Sequence[str], now: datetime | None = None
) -> Changes:
    return _manual(session, segment, contact_ids, "manual_remove", "manual_remove", now or utcnow())


def parse_id_csv(data: bytes) -> list[str]:
    """One id a line (contact id ctc_… or external id), first column; a header line whose
    first cell is id/external_id/contact_id is skipped."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise Invalid("the CSV must be UTF-8 text", code="invalid_csv") from exc
    out: list[str] = []
    for n, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        if not row or not row[0].strip():
            continue
        value = row[0].strip()
        if n == 1 and value.lower() in ("id", "external_id", "contact_id", "user_id"):
            continue
        if len(value) > 128:
            raise Invalid(
                f"line {n}: an id is at most 128 characters",
                code="invalid_csv",
                details={"line": n},
            )
        out.append(value)
    if len(out) > MAX_CSV_ROWS:
        raise Invalid(f"at most {MAX_CSV_ROWS} ids per upload", code="invalid_csv")
    return list(dict.fromkeys(out))


def upload_static(
    session: Session,
    segment: Segment,
    ids: Sequence[str],
    *,
    replace: bool,
    now: datetime | None = None,
) -> tuple[Changes, list[str]]:
    """Set (``replace``) or extend a static segment's snapshot from contact or external ids;
    answers the changes and the ids that matched no contact (nothing written if all fail)."""
    if segment.kind != "static":
        raise Invalid(
            "only a static segment takes an upload; its members are computed",
            code="segment_not_static",
        )
    at = now or utcnow()
    direct = [i for i in ids if i.startswith("ctc_")]
    found = repository.existing_contacts(session, segment.workspace_id, direct)
    by_ext = repository.contact_ids_by_external(
        session, segment.workspace_id, [i for i in ids if i not in found]
    )
    matched = found | set(by_ext.values())
    unknown = [i for i in ids if i not in found and i not in by_ext]
    if ids and not matched:
        raise Invalid(
            "none of the uploaded ids is a contact of this workspace",
            code="no_contacts_matched",
            details={"unknown": unknown[:50]},
        )
    rows = repository.member_rows(session, segment.id)
    before = (rows["computed"] | rows["manual_add"]) - rows["manual_remove"]
    computed = matched if replace else rows["computed"] | matched
    repository.remove_members(session, segment.id, "computed", rows["computed"] - computed)
    repository.add_members(
        session, segment.workspace_id, segment.id, "computed", computed - rows["computed"], at
    )
    version = repository.bump_version(session, segment)
    after = (computed | rows["manual_add"]) - rows["manual_remove"]
    segment.built_at = at
    return _record(session, segment, before, after, "csv", version, at), unknown


def freeze(session: Session, source: Segment, name: str, now: datetime | None = None) -> Segment:
    """A static copy of a segment's current members (a snapshot that no longer moves)."""
    at = now or utcnow()
    name = _check_name(session, source.workspace_id, name)
    rows = repository.member_rows(session, source.id)
    members = (rows["computed"] | rows["manual_add"]) - rows["manual_remove"]
    copy = Segment(
        id=new_id("seg"),
        workspace_id=source.workspace_id,
        name=name,
        kind="static",
        condition=None,
        frozen_from_id=source.id,
        description=f"{source.name} 的快照",
        version=1,
        size=0,
        built_at=at,
        created_at=at,
        updated_at=at,
    )
    session.add(copy)
    session.flush()
    repository.add_members(session, copy.workspace_id, copy.id, "computed", members, at)
    _record(session, copy, set(), members, f"frozen_from:{source.id}", 1, at)
    return copy


def size_series(
    session: Session, segment: Segment, days: int, now: datetime | None = None
) -> list[tuple[str, int]]:
    """Daily size for the last ``days`` days; a day without a record carries the last size."""
    today = (now or utcnow()).date()
    start = today - timedelta(days=days - 1)
    known = dict(repository.sizes(session, segment.id, start - timedelta(days=366)))
    out: list[tuple[str, int]] = []
    last: int | None = None
    for d in sorted(k for k in known if k < start):
        last = known[d]
    for i in range(days):
        day = start + timedelta(days=i)
        if day in known:
            last = known[day]
        if last is not None:
            out.append((day.isoformat(), last))
    return out


def ordered_for_build(segments: Iterable[Segment]) -> list[Segment]:
    """Referenced segments first, so a segment built after them reads their new members."""
    items = {s.id: s for s in segments}
    deps = {sid: _refs(s.condition) & set(items) for sid, s in items.items()}
    out: list[Segment] = []
    done: set[str] = set()

    def visit(sid: str, trail: set[str]) -> None:
        if sid in done or sid in trail:
            return
        trail.add(sid)
        for d in sorted(deps[sid]):
            visit(d, trail)
        done.add(sid)
        out.append(items[sid])

    for sid in sorted(items):
        visit(sid, set())
    return out


# -- rule tags --------------------------------------------------------------------------------


def apply_rule_tag(
    session: Session,
    reader: Session,
    store: EventStore | None,
    tag: Any,
    node: c.Condition,
    contact_ids: Sequence[str] | None,
    *,
    cause: str,
    now: datetime | None = None,
    cache: dict[Any, Any] | None = None,
) -> tuple[int, int]:
    """Make a rule tag's holders (among ``contact_ids``, or everyone) exactly those its
    condition selects, through contacts' add_tags / remove_tags (source 'rule'), so each
    change is recorded with why and published as contact.tags_changed. (added, removed)."""
    import importlib

    from sqlalchemy import select

    from liebian.contacts.models import ContactTag

    contact_tags: Any = importlib.import_module("liebian.contacts.tags")
    ws = tag.workspace_id
    want = evaluate(reader, store, ws, node, contact_ids, now=now or utcnow(), cache=cache)
    stmt = select(ContactTag.contact_id).where(
        ContactTag.workspace_id == ws, ContactTag.tag_id == tag.id
    )
    have: set[str] = set()
    if contact_ids is None:
        have = set(session.scalars(stmt))
    else:
        for part in repository.chunks(list(contact_ids)):
            have |= set(session.scalars(stmt.where(ContactTag.contact_id.in_(part))))
    add, remove = sorted(want - have), sorted(have - want)
    reason = f"规则: {cause}"
    if add:
        contact_tags.add_tags(session, ws, add, [tag.id], source="rule", reason=reason)
    if remove:
        contact_tags.remove_tags(session, ws, remove, [tag.id], source="rule", reason=reason)
    return len(add), len(remove)


def save_rule_tag(
    session: Session,
    reader: Session,
    store: EventStore | None,
    workspace_id: str,
    *,
    condition: Any,
    name: str | None = None,
    color: str = "#2f6fed",
    group_id: str | None = None,
    tag_id: str | None = None,
) -> tuple[Any, int, int]:
    """Create (``tag_id`` None) or re-define a rule tag and apply it to everyone now."""
    from sqlalchemy import select

    from liebian.contacts.models import Tag

    node = check_condition(session, workspace_id, condition)
    _conditions_changed(session)
    at = utcnow()
    if tag_id is None:
        label = (name or "").strip()
        if not label or len(label) > 64:
            raise Invalid("name must be 1–64 characters", details={"field": "name"})
        if session.scalar(
            select(Tag.id).where(Tag.workspace_id == workspace_id, Tag.name == label)
        ):
            raise Conflict(
                f"a tag named {label!r} exists already",
                code="tag_name_taken",
                details={"field": "name"},
            )
        tag = Tag(
            id=new_id("tag"),
            workspace_id=workspace_id,
            group_id=group_id,
            name=label,
            color=color,
            kind="rule",
            condition=condition,
            created_at=at,
        )
        session.add(tag)
        session.flush()
        cause = "rule_created"
    else:
        found = session.scalar(
            select(Tag).where(Tag.workspace_id == workspace_id, Tag.id == tag_id)
        )
        if found is None or found.kind != "rule":
            raise NotFound(f"no rule tag {tag_id!r} in this workspace", code="tag_not_found")
        tag = found
        tag.condition = condition
        cause = "rule_changed"
    added, removed = apply_rule_tag(session, reader, store, tag, node, None, cause=cause, now=at)
    return tag, added, removed
