"""HTTP for people: contacts (list/search, profile, timeline, edits, identity merge, CSV
import/export, PIPL export and erasure), tags and tag groups, custom attribute definitions.

Authorization lives here, in ``_require``: reading people needs ``analyst``, changing them
``operator``, merging, PIPL export and erasure ``admin``; PII is in clear only for roles that
may see it (``Principal.may_see_pii``), masked otherwise.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Query, Response
from fastapi.responses import StreamingResponse

from liebian.app.deps import PrincipalDep, RuntimeDep, SessionDep
from liebian.contacts import attributes, identity, io, pipl, repository, search, tags, timeline
from liebian.contacts import service as contacts
from liebian.contacts.schemas import (
    AliasKindValue,
    AliasOut,
    AttributeDefIn,
    AttributeDefList,
    AttributeDefOut,
    AttributeDefPatch,
    BulkTagIn,
    ContactPage,
    ContactPatch,
    ErasureOut,
    ImportOut,
    MergeIn,
    MergeOut,
    PersonExport,
    Profile,
    TagChangeOut,
    TagGroupIn,
    TagGroupList,
    TagGroupOut,
    TagIdsIn,
    TagIn,
    TagList,
    TagOut,
    TagPatch,
    TimelinePage,
    errors,
)
from liebian.kit.auth import Principal, Role
from liebian.kit.errors import Invalid

router = APIRouter(tags=["contacts"])

_ACTIONS = {"read": Role.analyst, "write": Role.operator, "admin": Role.admin}


def _require(principal: Principal, action: Literal["read", "write", "admin"]) -> None:
    principal.require(_ACTIONS[action])


def _actor(principal: Principal) -> str:
    return principal.member_id or principal.key_id or principal.role.value


def _filter(
    runtime: Any,
    q: str | None,
    tag: list[str] | None,
    tag_match: str,
    channel: str | None,
    first_seen_from: datetime | None,
    first_seen_to: datetime | None,
    last_seen_from: datetime | None,
    last_seen_to: datetime | None,
    campaign_id: str | None,
) -> repository.ContactFilter:
    for name, value in (
        ("first_seen_from", first_seen_from), ("first_seen_to", first_seen_to),
        ("last_seen_from", last_seen_from), ("last_seen_to", last_seen_to),
    ):  # fmt: skip
        if value is not None and value.tzinfo is None:
            raise Invalid(
                f"{name} needs a time zone (e.g. 2026-11-01T00:00:00+08:00)",
                code="naive_time",
                details={"field": name},
            )
    return repository.ContactFilter(
        tag_ids=tuple(tag or ()),
        tag_match=tag_match,
        channel=channel or None,
        first_seen_from=first_seen_from,
        first_seen_to=first_seen_to,
        last_seen_from=last_seen_from,
        last_seen_to=last_seen_to,
        campaign_id=campaign_id or None,
        search=search.terms(runtime.cipher, q) if q is not None and q != "" else None,
    )


Q = Annotated[
    str | None, Query(max_length=128, description="external id, phone, email or nickname prefix")
]
TagQ = Annotated[list[str] | None, Query(description="tag id; repeat for several")]
MatchQ = Annotated[Literal["any", "all"], Query(description="with several tags: any or all")]
ChannelQ = Annotated[str | None, Query(max_length=64, description="first-touch (source) channel")]
TimeQ = Annotated[datetime | None, Query()]
CampaignQ = Annotated[str | None, Query(max_length=40, description="participants of a campaign")]
SegmentQ = Annotated[str | None, Query(max_length=40, description="members of a segment (seg_…)")]
CommunityQ = Annotated[
    str | None, Query(max_length=40, description="members of a community (cmy_…)")
]
CommunityStatusQ = Annotated[
    Literal["joined", "routed", "left", "any"],
    Query(description="with community: in a group now (joined), routed, left, or any"),
]


def _in_segment(
    f: repository.ContactFilter, session: Any, workspace_id: str, segment: str | None
) -> repository.ContactFilter:
    if not segment:
        return f
    from liebian.segments.service import member_filter

    return dataclasses.replace(f, extra=(*f.extra, member_filter(session, workspace_id, segment)))


def _in_community(
    f: repository.ContactFilter,
    session: Any,
    workspace_id: str,
    community: str | None,
    status: str,
) -> repository.ContactFilter:
    if not community:
        return f
    from liebian.segments.service import community_filter

    clause = community_filter(session, workspace_id, community, status)
    return dataclasses.replace(f, extra=(*f.extra, clause))


@router.get("/contacts", response_model=ContactPage, responses=errors(403, 422))
def list_contacts(
    principal: PrincipalDep,
    session: SessionDep,
    runtime: RuntimeDep,
    q: Q = None,
    tag: TagQ = None,
    tag_match: MatchQ = "any",
    channel: ChannelQ = None,
    first_seen_from: TimeQ = None,
    first_seen_to: TimeQ = None,
    last_seen_from: TimeQ = None,
    last_seen_to: TimeQ = None,
    campaign_id: CampaignQ = None,
    segment: SegmentQ = None,
    community: CommunityQ = None,
    community_status: CommunityStatusQ = "joined",
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> dict[str, Any]:
    """People, newest first, cursor-paged; every filter narrows the list."""
    _require(principal, "read")
    f = _filter(
        runtime, q, tag, tag_match, channel, first_seen_from, first_seen_to,
        last_seen_from, last_seen_to, campaign_id,
    )  # fmt: skip
    f = _in_segment(f, session, principal.workspace_id, segment)
    f = _in_community(f, session, principal.workspace_id, community, community_status)
    page, next_cursor = contacts.list_page(
        session, principal.workspace_id, runtime.cipher, f, cursor=cursor, limit=limit
    )
    tag_map = repository.tags_of(session, [c.id for c in page])
    return {
        "items": [
            contacts.item(runtime.cipher, c, tag_map[c.id], may_see_pii=principal.may_see_pii)
            for c in page
        ],
        "next_cursor": next_cursor,
    }


@router.get(
    "/contacts/export.csv",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}}}, **errors(403, 422)},
)
def export_contacts(
    principal: PrincipalDep,
    session: SessionDep,
    runtime: RuntimeDep,
    q: Q = None,
    tag: TagQ = None,
    tag_match: MatchQ = "any",
    channel: ChannelQ = None,
    first_seen_from: TimeQ = None,
    first_seen_to: TimeQ = None,
    last_seen_from: TimeQ = None,
    last_seen_to: TimeQ = None,
    campaign_id: CampaignQ = None,
    segment: SegmentQ = None,
    community: CommunityQ = None,
    community_status: CommunityStatusQ = "joined",
) -> StreamingResponse:
    """The filtered contacts as CSV; phone/email/nickname columns only for roles that may see PII."""
    _require(principal, "read")
    f = _filter(
        runtime, q, tag, tag_match, channel, first_seen_from, first_seen_to,
        last_seen_from, last_seen_to, campaign_id,
    )  # fmt: skip
    f = _in_segment(f, session, principal.workspace_id, segment)
    f = _in_community(f, session, principal.workspace_id, community, community_status)
    if principal.may_see_pii:
        principal.require_step_up("exporting contacts with their phone numbers and emails")
    # Rendered here, inside the request's session, so the stream reads one consistent snapshot.
    body = "".join(
        io.export_csv(
            session, runtime.cipher, principal.workspace_id, f, may_see_pii=principal.may_see_pii
        )
    )
    return StreamingResponse(
        iter([body]),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="contacts.csv"'},
    )


@router.post("/contacts/import", response_model=ImportOut, responses=errors(403, 413, 422))
def import_contacts(
    principal: PrincipalDep,
    session: SessionDep,
    runtime: RuntimeDep,
    body: Annotated[bytes, Body(media_type="text/csv")],
) -> dict[str, int]:
    """Up to 10,000 rows of CSV (UTF-8; header: external_id, nickname, phone, email,
    avatar_url, tags, and attribute keys). All rows are checked first: any problem is a 422
    listing each by row and field, and nothing is written."""
    _require(principal, "write")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise Invalid(
            "the CSV must be UTF-8 (in Excel: 另存为 → CSV UTF-8)",
            code="invalid_encoding",
            details={"field": "body"},
        ) from None
    return io.import_csv(session, runtime.cipher, principal.workspace_id, text)


@router.get("/contacts/{ref}", response_model=Profile, responses=errors(403, 404))
def get_contact(
    ref: str, principal: PrincipalDep, session: SessionDep, runtime: RuntimeDep
) -> dict[str, Any]:
    """One person by id (ctc_…) or external id: identity (masked unless the role may see PII),
    aliases, tags, segments, custom and computed attributes."""
    _require(principal, "read")
    from liebian.segments.repository import segments_of

    contact = contacts.find(session, principal.workspace_id, ref)
    out = contacts.profile(session, runtime.cipher, contact, may_see_pii=principal.may_see_pii)
    out["segments"] = segments_of(session, principal.workspace_id, contact.id)
    return out


@router.patch("/contacts/{ref}", response_model=Profile, responses=errors(403, 404, 410, 422))
def patch_contact(
    ref: str, body: ContactPatch, principal: PrincipalDep, session: SessionDep, runtime: RuntimeDep
) -> dict[str, Any]:
    """Edit identity fields and set custom attributes (null removes one)."""
    _require(principal, "write")
    contact = contacts.find(session, principal.workspace_id, ref)
    fields = body.model_dump(exclude_unset=True, exclude={"attributes"})
    contacts.patch(session, runtime.cipher, contact, fields=fields, attributes_in=body.attributes)
    return contacts.profile(session, runtime.cipher, contact, may_see_pii=principal.may_see_pii)


@router.get(
    "/contacts/{ref}/timeline", response_model=TimelinePage, responses=errors(403, 404, 422)
)
def get_timeline(
    ref: str,
    principal: PrincipalDep,
    session: SessionDep,
    runtime: RuntimeDep,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=timeline.MAX_LIMIT)] = 50,
) -> dict[str, Any]:
    """Events (by the person's ids and visitor aliases, from the event store) and campaign
    joins, invites, helps, rewards and tag changes, newest first, cursor-paged."""
    _require(principal, "read")
    contact = contacts.find(session, principal.workspace_id, ref)
    items, next_cursor = timeline.page(
        session, runtime.event_store, contact, cursor=cursor, limit=limit
    )
    return {"items": [i.out() for i in items], "next_cursor": next_cursor}


@router.post("/contacts/{ref}/merge", response_model=MergeOut, responses=errors(403, 404, 409, 422))
def merge_contacts(
    ref: str, body: MergeIn, principal: PrincipalDep, session: SessionDep, runtime: RuntimeDep
) -> dict[str, Any]:
    """Merge ``other`` into this contact: its tags, attributes, aliases, participations,
    referrals, rewards and events move here; it keeps resolving to this one. Audited."""
    _require(principal, "admin")
    survivor = contacts.find(session, principal.workspace_id, ref)
    other = contacts.find(session, principal.workspace_id, body.other, field="other")
    # Events still in the spool would be loaded after the re-key under the old id: load them.
    runtime.flush_events()
    return identity.merge(
        session, runtime.event_store, principal.workspace_id, survivor, other, _actor(principal)
    )


@router.post(
    "/contacts/{ref}/aliases", response_model=AliasOut, status_code=201,
    responses=errors(403, 404, 409, 422),
)  # fmt: skip
def add_alias(
    ref: str, body: AliasKindValue, principal: PrincipalDep, session: SessionDep
) -> dict[str, Any]:
    _require(principal, "write")
    contact = contacts.find(session, principal.workspace_id, ref)
    identity.attach(session, principal.workspace_id, contact.id, body.kind, body.value)
    alias = next(
        a for a in repository.aliases_of(session, contact.id)
        if a.kind == body.kind and a.value == body.value.strip()[:128]
    )  # fmt: skip
    return {"kind": alias.kind, "value": alias.value, "created_at": alias.created_at}


@router.post(
    "/contacts/{ref}/tags", response_model=TagChangeOut, responses=errors(403, 404, 409, 422)
)
def tag_contact(
    ref: str, body: TagIdsIn, principal: PrincipalDep, session: SessionDep
) -> dict[str, int]:
    _require(principal, "write")
    contact = contacts.find(session, principal.workspace_id, ref)
    n = tags.add_tags(session, principal.workspace_id, [contact.id], body.tag_ids, "manual", "api")
    return {"changed": n, "contacts": 1}


@router.delete(
    "/contacts/{ref}/tags/{tag_id}", response_model=TagChangeOut,
    responses=errors(403, 404, 409, 422),
)  # fmt: skip
def untag_contact(
    ref: str, tag_id: str, principal: PrincipalDep, session: SessionDep
) -> dict[str, int]:
    _require(principal, "write")
    contact = contacts.find(session, principal.workspace_id, ref)
    n = tags.remove_tags(session, principal.workspace_id, [contact.id], [tag_id], "manual", "api")
    return {"changed": n, "contacts": 1}


@router.get("/contacts/{ref}/export", response_model=PersonExport, responses=errors(403, 404, 410))
def export_contact(
    ref: str, principal: PrincipalDep, session: SessionDep, runtime: RuntimeDep
) -> dict[str, Any]:
    """PIPL: everything held about this person, as JSON (PII in clear: admin and owner only)."""
    _require(principal, "admin")
    principal.require_step_up("exporting a person's data")
    contact = contacts.find(session, principal.workspace_id, ref)
    return pipl.export(session, runtime.event_store, runtime.cipher, contact)


@router.delete("/contacts/{ref}", response_model=ErasureOut, responses=errors(403, 404, 410))
def erase_contact(
    ref: str, principal: PrincipalDep, session: SessionDep, runtime: RuntimeDep
) -> dict[str, Any]:
    """PIPL erasure, not undoable: PII, aliases, attributes and tags removed; events and the
    reward ledger keep their figures under an erased marker. Audited."""
    _require(principal, "admin")
    principal.require_step_up("erasing a contact")
    contact = contacts.find(session, principal.workspace_id, ref)
    # Events still in the spool would be loaded after the erasure, unpseudonymized: load them.
    runtime.flush_events()
    return pipl.erase(session, runtime.event_store, runtime.cipher, contact, _actor(principal))


# -- tags ----------------------------------------------------------------------------------------


def _group_out(group: Any, count: int = 0) -> dict[str, Any]:
    return {"id": group.id, "name": group.name, "created_at": group.created_at, "tags_count": count}


def _tag_out(tag: Any, count: int = 0) -> dict[str, Any]:
    return {
        "id": tag.id, "name": tag.name, "color": tag.color, "kind": tag.kind,
        "group_id": tag.group_id, "condition": tag.condition, "contacts_count": count,
        "created_at": tag.created_at,
    }  # fmt: skip


@router.get("/tag-groups", response_model=TagGroupList, responses=errors(403))
def list_tag_groups(principal: PrincipalDep, session: SessionDep) -> dict[str, Any]:
    _require(principal, "read")
    return {
        "items": [_group_out(g, n) for g, n in tags.list_groups(session, principal.workspace_id)]
    }


@router.post(
    "/tag-groups", response_model=TagGroupOut, status_code=201, responses=errors(403, 409, 422)
)
def create_tag_group(
    body: TagGroupIn, principal: PrincipalDep, session: SessionDep
) -> dict[str, Any]:
    _require(principal, "write")
    return _group_out(tags.create_group(session, principal.workspace_id, body.name))


@router.patch(
    "/tag-groups/{group_id}", response_model=TagGroupOut, responses=errors(403, 404, 409, 422)
)
def rename_tag_group(
    group_id: str, body: TagGroupIn, principal: PrincipalDep, session: SessionDep
) -> dict[str, Any]:
    _require(principal, "write")
    return _group_out(tags.rename_group(session, principal.workspace_id, group_id, body.name))


@router.delete("/tag-groups/{group_id}", status_code=204, responses=errors(403, 404))
def delete_tag_group(group_id: str, principal: PrincipalDep, session: SessionDep) -> Response:
    _require(principal, "write")
    tags.delete_group(session, principal.workspace_id, group_id)
    return Response(status_code=204)


@router.get("/tags", response_model=TagList, responses=errors(403))
def list_tags(
    principal: PrincipalDep, session: SessionDep, group_id: str | None = None
) -> dict[str, Any]:
    _require(principal, "read")
    return {
        "items": [
            _tag_out(t, n) for t, n in tags.list_tags(session, principal.workspace_id, group_id)
        ]
    }


@router.post("/tags", response_model=TagOut, status_code=201, responses=errors(403, 404, 409, 422))
def create_tag(body: TagIn, principal: PrincipalDep, session: SessionDep) -> dict[str, Any]:
    _require(principal, "write")
    return _tag_out(
        tags.create_tag(session, principal.workspace_id, body.name, body.color, body.group_id)
    )


@router.patch("/tags/{tag_id}", response_model=TagOut, responses=errors(403, 404, 409, 422))
def patch_tag(
    tag_id: str, body: TagPatch, principal: PrincipalDep, session: SessionDep
) -> dict[str, Any]:
    _require(principal, "write")
    tag = tags.patch_tag(
        session, principal.workspace_id, tag_id, name=body.name, color=body.color,
        group_id=body.group_id, group_given="group_id" in body.model_fields_set,
    )  # fmt: skip
    return _tag_out(tag)


@router.delete("/tags/{tag_id}", status_code=204, responses=errors(403, 404))
def delete_tag(tag_id: str, principal: PrincipalDep, session: SessionDep) -> Response:
    _require(principal, "write")
    tags.delete_tag(session, principal.workspace_id, tag_id)
    return Response(status_code=204)


SEGMENT_BULK_LIMIT = 50_000


@router.post("/tags/bulk", response_model=TagChangeOut, responses=errors(403, 409, 422))
def bulk_tag(body: BulkTagIn, principal: PrincipalDep, session: SessionDep) -> dict[str, int]:
    """Tag or untag many contacts at once (ids, external ids and/or a segment's members;
    unknown ones: 422, nothing changes)."""
    _require(principal, "write")
    if not body.contact_ids and not body.external_ids and not body.segment_id:
        raise Invalid(
            "give contact_ids, external_ids or segment_id",
            code="no_contacts",
            details={"field": "contact_ids"},
        )
    ids = tags.contacts_by_refs(
        session, principal.workspace_id, body.contact_ids, body.external_ids
    )
    if body.segment_id:
        from liebian.segments.service import member_ids

        members = member_ids(session, principal.workspace_id, body.segment_id, SEGMENT_BULK_LIMIT)
        ids = list(dict.fromkeys([*ids, *members]))
    apply = tags.add_tags if body.action == "add" else tags.remove_tags
    n = apply(session, principal.workspace_id, ids, body.tag_ids, "manual", "bulk")
    return {"changed": n, "contacts": len(ids)}


@router.post("/tags/bulk.csv", response_model=TagChangeOut, responses=errors(403, 409, 413, 422))
def bulk_tag_csv(
    principal: PrincipalDep,
    session: SessionDep,
    body: Annotated[bytes, Body(media_type="text/csv")],
    tag_id: Annotated[list[str], Query(min_length=1, max_length=50)],
    action: Literal["add", "remove"] = "add",
) -> dict[str, int]:
    """Bulk tagging from a CSV whose first column (header ``external_id`` or ``id``) names
    the contacts, at most 10,000 rows."""
    _require(principal, "write")
    header, rows = io._parse(body.decode("utf-8", errors="replace"))
    column = (header[0] if header else "").strip().lower()
    if column not in ("external_id", "id"):
        raise Invalid(
            "the first column must be external_id or id",
            code="invalid_csv",
            details={"field": "header"},
        )
    if len(rows) > io.MAX_ROWS:
        raise Invalid(
            f"at most {io.MAX_ROWS} rows", code="too_many_rows", details={"field": "body"}
        )
    values = [r[0].strip() for r in rows if r and r[0].strip()]
    ids = tags.contacts_by_refs(
        session, principal.workspace_id,
        values if column == "id" else [], values if column == "external_id" else [],
    )  # fmt: skip
    apply = tags.add_tags if action == "add" else tags.remove_tags
    n = apply(session, principal.workspace_id, ids, tag_id, "manual", "bulk csv")
    return {"changed": n, "contacts": len(ids)}


# -- custom attribute definitions ----------------------------------------------------------------


def _def_out(d: Any) -> dict[str, Any]:
    return {"key": d.key, "type": d.type, "label": d.label, "created_at": d.created_at}


@router.get("/contact-attributes", response_model=AttributeDefList, responses=errors(403))
def list_attribute_defs(principal: PrincipalDep, session: SessionDep) -> dict[str, Any]:
    _require(principal, "read")
    return {
        "items": [_def_out(d) for d in attributes.defs(session, principal.workspace_id).values()]
    }


@router.post(
    "/contact-attributes", response_model=AttributeDefOut, status_code=201,
    responses=errors(403, 409, 422),
)  # fmt: skip
def define_attribute(
    body: AttributeDefIn, principal: PrincipalDep, session: SessionDep
) -> dict[str, Any]:
    _require(principal, "write")
    return _def_out(
        attributes.define(session, principal.workspace_id, body.key, body.type, body.label)
    )


@router.patch(
    "/contact-attributes/{key}", response_model=AttributeDefOut, responses=errors(403, 404, 422)
)
def relabel_attribute(
    key: str, body: AttributeDefPatch, principal: PrincipalDep, session: SessionDep
) -> dict[str, Any]:
    """Only the label changes: a type change would invalidate stored values."""
    _require(principal, "write")
    d = attributes.get_def(session, principal.workspace_id, key)
    d.label = body.label
    return _def_out(d)


@router.delete("/contact-attributes/{key}", status_code=204, responses=errors(403, 404))
def delete_attribute(key: str, principal: PrincipalDep, session: SessionDep) -> Response:
    """Deletes the definition and every contact's value for it."""
    _require(principal, "write")
    attributes.delete_def(session, principal.workspace_id, key)
    return Response(status_code=204)
