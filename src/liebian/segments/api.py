"""HTTP for segments (人群): parse, authorize, call the service, shape the reply."""

from __future__ import annotations

import base64
from typing import Annotated

from fastapi import APIRouter, Body, Query, Response
from sqlalchemy.orm import Session

from liebian.app.deps import PrincipalDep, RuntimeDep, SessionDep
from liebian.app.runtime import Runtime
from liebian.kit.auth import Principal, Role
from liebian.kit.errors import Invalid
from liebian.kit.pagination import decode_cursor, page_of, paginate
from liebian.kit.schemas import Page
from liebian.segments import conditions as c
from liebian.segments import repository, service
from liebian.segments.models import Segment
from liebian.segments.schemas import (
    ERRORS,
    BuildOut,
    ChangeOut,
    FreezeIn,
    ManualIn,
    MemberOut,
    PreviewIn,
    PreviewOut,
    RuleTagIn,
    RuleTagOut,
    SampleMember,
    SegmentCreate,
    SegmentOut,
    SegmentUpdate,
    SizePoint,
    SizesOut,
    UploadOut,
    VocabularyOut,
)

router = APIRouter(tags=["segments"])

_READ, _WRITE = "read", "write"


def authorize(principal: Principal, action: str) -> None:
    """The one place segments decide who may do what: analysts read, operators change."""
    principal.require(Role.analyst if action == _READ else Role.operator)


def _reader(runtime: Runtime) -> Session:
    """Evaluation reads: the runtime's read-only sessions (on SQLite they never take the
    writer lock, and one evaluation reads one snapshot; kit/db.py, decision 0013)."""
    return runtime.read_sessions()


def to_out(s: Segment) -> SegmentOut:
    return SegmentOut(
        id=s.id,
        name=s.name,
        description=s.description,
        kind=s.kind,
        condition=s.condition,
        frozen_from_id=s.frozen_from_id,
        version=s.version,
        size=s.size,
        built_at=s.built_at,
        build_ms=s.build_ms,
        build_error=s.build_error,
        created_at=s.created_at,
        updated_at=s.updated_at,
    )


@router.post("/segments/preview", response_model=PreviewOut, responses=ERRORS)
def preview_segment(
    body: PreviewIn, principal: PrincipalDep, session: SessionDep, runtime: RuntimeDep
) -> PreviewOut:
    """Count and a sample of 20 members of a condition, without saving anything."""
    authorize(principal, _READ)
    with _reader(runtime) as reader:
        result = service.preview(
            session, reader, runtime.event_store, principal.workspace_id, body.condition
        )
    return PreviewOut(
        count=result.count,
        sample=[SampleMember(id=i, external_id=e) for i, e in result.sample],
        took_ms=result.took_ms,
        warnings=result.warnings,
    )


@router.get("/segments/vocabulary", response_model=VocabularyOut, responses=ERRORS)
def vocabulary(principal: PrincipalDep, session: SessionDep, runtime: RuntimeDep) -> VocabularyOut:
    """What a condition may name in this workspace (the builder's menus)."""
    authorize(principal, _READ)
    from liebian.contacts.models import Tag

    ws = principal.workspace_id
    tags = session.query(Tag).filter(Tag.workspace_id == ws).order_by(Tag.name).all()
    store = runtime.event_store
    events = sorted(store.event_names(ws)) if store is not None else []
    segments = session.scalars(repository.list_stmt(ws).order_by(Segment.name)).all()
    types = repository.attribute_types(session, ws)
    return VocabularyOut(
        attributes=[{"key": k, "type": t} for k, t in c.BUILTIN_ATTRIBUTES.items()],
        custom_attributes=[{"key": k, "type": t} for k, t in sorted(types.items())],
        tags=[{"id": t.id, "name": t.name, "color": t.color, "kind": t.kind} for t in tags],
        events=events,
        segments=[{"id": s.id, "name": s.name, "kind": s.kind} for s in segments],
        communities=[
            {"id": m.id, "name": m.name, "tiers": m.tiers, "groups": m.groups}
            for m in repository.communities(session, ws).values()
        ],
        operators={
            **{t: list(ops) for t, ops in c.OPS_BY_TYPE.items()},
            "measure": list(c.MEASURE_OPS),
        },
    )


@router.post("/segments", response_model=SegmentOut, status_code=201, responses=ERRORS)
def create_segment(
    body: SegmentCreate, principal: PrincipalDep, session: SessionDep, runtime: RuntimeDep
) -> SegmentOut:
    authorize(principal, _WRITE)
    with _reader(runtime) as reader:
        segment = service.create(
            session,
            reader,
            runtime.event_store,
            principal.workspace_id,
            name=body.name,
            kind=body.kind,
            condition=body.condition,
            description=body.description,
        )
    return to_out(segment)


@router.get("/segments", response_model=Page[SegmentOut], responses=ERRORS)
def list_segments(
    principal: PrincipalDep,
    session: SessionDep,
    kind: Annotated[str | None, Query(pattern="^(dynamic|static)$")] = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> Page[SegmentOut]:
    authorize(principal, _READ)
    stmt = paginate(repository.list_stmt(principal.workspace_id, kind), Segment.id, cursor, limit)
    rows, next_cursor = page_of(list(session.scalars(stmt)), limit)
    return Page(items=[to_out(s) for s in rows], next_cursor=next_cursor)


@router.get("/segments/{segment_id}", response_model=SegmentOut, responses=ERRORS)
def get_segment(segment_id: str, principal: PrincipalDep, session: SessionDep) -> SegmentOut:
    authorize(principal, _READ)
    return to_out(service.get(session, principal.workspace_id, segment_id))


@router.patch("/segments/{segment_id}", response_model=SegmentOut, responses=ERRORS)
def update_segment(
    segment_id: str,
    body: SegmentUpdate,
    principal: PrincipalDep,
    session: SessionDep,
    runtime: RuntimeDep,
) -> SegmentOut:
    authorize(principal, _WRITE)
    segment = service.get(session, principal.workspace_id, segment_id)
    with _reader(runtime) as reader:
        service.update(
            session,
            reader,
            runtime.event_store,
            segment,
            name=body.name,
            description=body.description,
            condition=body.condition,
        )
    return to_out(segment)


@router.delete("/segments/{segment_id}", status_code=204, responses=ERRORS)
def delete_segment(segment_id: str, principal: PrincipalDep, session: SessionDep) -> Response:
    authorize(principal, _WRITE)
    service.delete(session, service.get(session, principal.workspace_id, segment_id))
    return Response(status_code=204)


@router.post("/segments/{segment_id}/build", response_model=BuildOut, responses=ERRORS)
def build_segment(
    segment_id: str, principal: PrincipalDep, session: SessionDep, runtime: RuntimeDep
) -> BuildOut:
    """Rebuild now (a new version); membership is otherwise kept current by itself."""
    authorize(principal, _WRITE)
    segment = service.get(session, principal.workspace_id, segment_id)
    if segment.kind != "dynamic":
        raise Invalid(
            "a static segment is not built; upload members instead", code="segment_not_dynamic"
        )
    with _reader(runtime) as reader:
        ch = service.build(session, reader, runtime.event_store, segment, cause="manual_build")
    return BuildOut(
        segment_id=segment.id,
        version=ch.version,
        entered=len(ch.entered),
        exited=len(ch.exited),
        size=ch.size,
    )


@router.get("/segments/{segment_id}/members", response_model=Page[MemberOut], responses=ERRORS)
def list_members(
    segment_id: str,
    principal: PrincipalDep,
    session: SessionDep,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> Page[MemberOut]:
    authorize(principal, _READ)
    segment = service.get(session, principal.workspace_id, segment_id)
    after = decode_cursor(cursor) if cursor else None
    rows = repository.members_page(session, segment.id, after, limit)
    items, next_cursor = page_of(rows, limit, id_of=lambda r: r[0])
    return Page(
        items=[
            MemberOut(contact_id=r[0], external_id=r[1], source=r[2], since=r[3]) for r in items
        ],
        next_cursor=next_cursor,
    )


@router.get("/segments/{segment_id}/history", response_model=Page[ChangeOut], responses=ERRORS)
def membership_history(
    segment_id: str,
    principal: PrincipalDep,
    session: SessionDep,
    cursor: str | None = None,
    contact_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> Page[ChangeOut]:
    """Entered/exited, newest first, with time, cause and build version."""
    authorize(principal, _READ)
    segment = service.get(session, principal.workspace_id, segment_id)
    before = _decode_change_cursor(cursor) if cursor else None
    rows = repository.history_page(session, segment.id, before, limit, contact_id)
    items = rows[:limit]
    next_cursor = _encode_change_cursor(items[-1][0].id) if len(rows) > limit else None
    return Page(
        items=[
            ChangeOut(
                contact_id=ch.contact_id,
                external_id=ext,
                change=ch.change,
                cause=ch.cause,
                version=ch.version,
                at=ch.at,
            )
            for ch, ext in items
        ],
        next_cursor=next_cursor,
    )


def _encode_change_cursor(change_id: int) -> str:
    return base64.urlsafe_b64encode(f"chg:{change_id}".encode()).decode().rstrip("=")


def _decode_change_cursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        kind, _, number = raw.partition(":")
        if kind == "chg" and number.isdigit():
            return int(number)
    except (ValueError, UnicodeDecodeError):
        pass
    raise Invalid(
        "cursor is not one this API gave out; pass next_cursor unchanged",
        code="bad_cursor",
        details={"field": "cursor"},
    )


@router.get("/segments/{segment_id}/sizes", response_model=SizesOut, responses=ERRORS)
def size_series(
    segment_id: str,
    principal: PrincipalDep,
    session: SessionDep,
    days: Annotated[int, Query(ge=1, le=366)] = 30,
) -> SizesOut:
    """Daily size (the last size recorded each day) for the dashboard."""
    authorize(principal, _READ)
    segment = service.get(session, principal.workspace_id, segment_id)
    return SizesOut(
        segment_id=segment.id,
        items=[SizePoint(day=d, size=n) for d, n in service.size_series(session, segment, days)],
    )


@router.post("/segments/{segment_id}/members", response_model=SegmentOut, responses=ERRORS)
def change_members(
    segment_id: str, body: ManualIn, principal: PrincipalDep, session: SessionDep
) -> SegmentOut:
    """Manual add/remove, kept apart from computed membership (rebuilds keep them)."""
    authorize(principal, _WRITE)
    segment = service.get(session, principal.workspace_id, segment_id)
    if not body.add and not body.remove:
        raise Invalid("give contact ids to add or remove", details={"field": "add"})
    if set(body.add) & set(body.remove):
        raise Invalid("a contact is both added and removed", details={"field": "remove"})
    if body.add:
        service.add_manual(session, segment, body.add)
    if body.remove:
        service.remove_manual(session, segment, body.remove)
    return to_out(segment)


@router.post(
    "/segments/{segment_id}/upload",
    response_model=UploadOut,
    responses=ERRORS,
    openapi_extra={
        "requestBody": {"content": {"text/csv": {"schema": {"type": "string"}}}, "required": True}
    },
)
def upload_members(
    segment_id: str,
    principal: PrincipalDep,
    session: SessionDep,
    body: Annotated[bytes, Body(media_type="text/csv")],
    replace: bool = True,
) -> UploadOut:
    """A static segment's members from a CSV of contact ids or external ids (first column)."""
    authorize(principal, _WRITE)
    segment = service.get(session, principal.workspace_id, segment_id)
    ids = service.parse_id_csv(body)
    ch, unknown = service.upload_static(session, segment, ids, replace=replace)
    return UploadOut(
        segment=to_out(segment),
        entered=len(ch.entered),
        exited=len(ch.exited),
        unknown_ids=unknown[:100],
    )


@router.post(
    "/segments/{segment_id}/freeze", response_model=SegmentOut, status_code=201, responses=ERRORS
)
def freeze_segment(
    segment_id: str, body: FreezeIn, principal: PrincipalDep, session: SessionDep
) -> SegmentOut:
    """A static copy of the segment's current members."""
    authorize(principal, _WRITE)
    source = service.get(session, principal.workspace_id, segment_id)
    return to_out(service.freeze(session, source, body.name))


@router.post(
    "/rule-tags", response_model=RuleTagOut, status_code=201, responses=ERRORS, tags=["tags"]
)
def create_rule_tag(
    body: RuleTagIn, principal: PrincipalDep, session: SessionDep, runtime: RuntimeDep
) -> RuleTagOut:
    """A tag its condition keeps current (规则标签): applied to everyone now, then kept
    within seconds of the events and changes that move people in or out."""
    authorize(principal, _WRITE)
    with _reader(runtime) as reader:
        tag, added, removed = service.save_rule_tag(
            session,
            reader,
            runtime.event_store,
            principal.workspace_id,
            name=body.name,
            color=body.color,
            group_id=body.group_id,
            condition=body.condition,
        )
    return RuleTagOut(
        id=tag.id,
        name=tag.name,
        kind=tag.kind,
        color=tag.color,
        condition=tag.condition,
        added=added,
        removed=removed,
    )


@router.put("/rule-tags/{tag_id}", response_model=RuleTagOut, responses=ERRORS, tags=["tags"])
def update_rule_tag(
    tag_id: str,
    body: RuleTagIn,
    principal: PrincipalDep,
    session: SessionDep,
    runtime: RuntimeDep,
) -> RuleTagOut:
    """Change a rule tag's condition; holders are recomputed now."""
    authorize(principal, _WRITE)
    with _reader(runtime) as reader:
        tag, added, removed = service.save_rule_tag(
            session,
            reader,
            runtime.event_store,
            principal.workspace_id,
            condition=body.condition,
            tag_id=tag_id,
        )
    return RuleTagOut(
        id=tag.id,
        name=tag.name,
        kind=tag.kind,
        color=tag.color,
        condition=tag.condition,
        added=added,
        removed=removed,
    )
