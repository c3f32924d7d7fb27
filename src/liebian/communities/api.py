"""HTTP for communities (社群): parse, call the service, shape the reply."""

from __future__ import annotations

import csv
import io
from datetime import date, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from liebian.analytics.sql import check_tz
from liebian.app.deps import PrincipalDep, RuntimeDep, SessionDep
from liebian.communities import calendar, messages, metrics, repository, service, wecom_posts
from liebian.communities.models import Community, CommunityGroup, CommunityMember
from liebian.communities.schemas import (
    AlertOut,
    AnnounceIn,
    CommunityCreate,
    CommunityOut,
    CommunityUpdate,
    GroupCreate,
    GroupOut,
    GroupUpdate,
    MaterialIn,
    MaterialOut,
    MemberIn,
    MemberOut,
    MessageResult,
    MessagesIn,
    MessagesOut,
    PostIn,
    PostOut,
    PostSendOut,
    PostUpdate,
    PreviewIn,
    PreviewLinkOut,
    PreviewOut,
    SendOut,
    TierMoveOut,
    TierPlaces,
    ViolationOut,
    WecomPostIn,
    WecomPostsOut,
)
from liebian.contacts import service as contacts
from liebian.kit.auth import Principal
from liebian.kit.csv_safe import neutralize
from liebian.kit.errors import NotFound
from liebian.kit.pagination import page_of
from liebian.kit.schemas import Page
from liebian.links.domains import public_base_url

router = APIRouter(tags=["communities"])
Limit = Annotated[int, Query(ge=1, le=500)]


def present(
    session: Session, base_url: str, community: Community, principal: Principal | None = None
) -> CommunityOut:
    """The community as the caller may see it: a member scoped to some of its groups sees the
    places left in those groups only."""
    base = public_base_url(session, community.workspace_id, base_url)
    seen = service.visible(session, principal) if principal is not None else None
    groups = seen.groups_of(community.id) if seen is not None else None
    return CommunityOut.model_validate(
        {
            **{
                c: getattr(community, c) for c in CommunityOut.model_fields if hasattr(community, c)
            },
            "entry_url": f"{base}/c/{community.id}",
            "places": [
                TierPlaces(tier=p.tier, groups_open=p.groups_open, places_left=p.places_left)
                for p in repository.places(session, community.id, groups)
            ],
        }
    )


def group_out(group: CommunityGroup) -> GroupOut:
    return GroupOut.model_validate(
        {**{c: getattr(group, c) for c in GroupOut.model_fields if hasattr(group, c)},
         "has_qr": bool(group.qr_image)}
    )  # fmt: skip


@router.post("/communities", response_model=CommunityOut, status_code=201)
def create_community(
    body: CommunityCreate, principal: PrincipalDep, session: SessionDep, runtime: RuntimeDep
) -> CommunityOut:
    community = service.create(session, principal, body)
    return present(session, runtime.settings.base_url, community, principal)


@router.get("/communities", response_model=Page[CommunityOut])
def list_communities(
    principal: PrincipalDep,
    session: SessionDep,
    runtime: RuntimeDep,
    cursor: str | None = None,
    limit: Limit = 50,
) -> Page[CommunityOut]:
    rows, next_cursor = page_of(service.list_page(session, principal, cursor, limit), limit)
    return Page(
        items=[present(session, runtime.settings.base_url, c, principal) for c in rows],
        next_cursor=next_cursor,
    )


@router.get("/communities/{community_id}", response_model=CommunityOut)
def get_community(
    community_id: str, principal: PrincipalDep, session: SessionDep, runtime: RuntimeDep
) -> CommunityOut:
    community = service.get(session, principal, community_id)
    return present(session, runtime.settings.base_url, community, principal)


@router.patch("/communities/{community_id}", response_model=CommunityOut)
def update_community(
    community_id: str,
    body: CommunityUpdate,
    principal: PrincipalDep,
    session: SessionDep,
    runtime: RuntimeDep,
) -> CommunityOut:
    community = service.update(session, principal, community_id, body)
    return present(session, runtime.settings.base_url, community, principal)


@router.post("/communities/{community_id}/groups", response_model=GroupOut, status_code=201)
def create_group(
    community_id: str, body: GroupCreate, principal: PrincipalDep, session: SessionDep
) -> GroupOut:
    return group_out(service.create_group(session, principal, community_id, body))


@router.get("/communities/{community_id}/groups", response_model=list[GroupOut])
def list_groups(community_id: str, principal: PrincipalDep, session: SessionDep) -> list[GroupOut]:
    community = service.get(session, principal, community_id)
    return [group_out(g) for g in service.list_groups(session, principal, community)]


@router.patch("/community-groups/{group_id}", response_model=GroupOut)
def update_group(
    group_id: str, body: GroupUpdate, principal: PrincipalDep, session: SessionDep
) -> GroupOut:
    return group_out(service.update_group(session, principal, group_id, body))


@router.post("/community-groups/{group_id}/members", response_model=MemberOut)
def record_member(
    group_id: str, body: MemberIn, principal: PrincipalDep, session: SessionDep
) -> CommunityMember:
    """A join or leave seen by the caller (a bot, a CRM): joins count even past capacity."""
    group = service.get_group(session, principal, group_id)
    service.authorize(principal, service.WRITE)
    community = service.get(session, principal, group.community_id)
    contact = contacts.upsert(
        session, None, principal.workspace_id, contacts.ContactInput(body.external_id)
    )
    if body.event == "left":
        service.leave_known(session, community, group, contact.id)
        member = repository.member_by_holder(session, community.id, contact.id)
        if member is None:
            raise NotFound("this contact is not a member of the group", code="member_not_found")
        return member
    inviter = (
        repository.member_by_invite(session, community.id, body.inviter_code)
        if body.inviter_code
        else None
    )
    return service.join_known(session, community, group, contact.id, "api", inviter)


@router.get("/communities/{community_id}/members", response_model=Page[MemberOut])
def list_members(
    community_id: str,
    principal: PrincipalDep,
    session: SessionDep,
    group_id: str | None = None,
    cursor: str | None = None,
    limit: Limit = 100,
) -> Page[MemberOut]:
    community = service.get(session, principal, community_id)
    groups = service.member_groups(session, principal, community, group_id)
    rows, next_cursor = page_of(
        repository.members_page(session, community.id, groups, cursor, limit), limit
    )
    return Page(items=[MemberOut.model_validate(m) for m in rows], next_cursor=next_cursor)


@router.get(
    "/communities/{community_id}/members.csv",
    response_class=Response,
    responses={200: {"content": {"text/csv": {}}}},
)
def export_members(
    community_id: str, principal: PrincipalDep, session: SessionDep, group_id: str | None = None
) -> Response:
    """The community's members (of the groups the caller may see) as CSV, without PII: ids,
    group, tier, status and dates. Recorded in the audit log as an export."""
    community = service.get(session, principal, community_id)
    groups = service.member_groups(session, principal, community, group_id)
    columns = ["id", "group_id", "contact_id", "status", "scene", "tier", "invite_code",
               "routed_at", "joined_at", "left_at"]  # fmt: skip
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(columns)
    cursor: str | None = None
    while True:
        rows, cursor = page_of(
            repository.members_page(session, community.id, groups, cursor, 500), 500
        )
        writer.writerows([neutralize(getattr(m, c)) for c in columns] for m in rows)
        if cursor is None:
            break
    return Response(
        "\ufeff" + out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{community.id}-members.csv"'},
    )


@router.get("/communities/{community_id}/alerts", response_model=Page[AlertOut])
def list_alerts(
    community_id: str,
    principal: PrincipalDep,
    session: SessionDep,
    cursor: str | None = None,
    limit: Limit = 50,
) -> Page[AlertOut]:
    community = service.get(session, principal, community_id)
    service.require_whole(session, principal, community)
    rows, next_cursor = page_of(repository.alerts_page(session, community.id, cursor, limit), limit)
    return Page(items=[AlertOut.model_validate(a) for a in rows], next_cursor=next_cursor)


@router.post("/community-messages", response_model=MessagesOut)
def ingest_messages(body: MessagesIn, principal: PrincipalDep, session: SessionDep) -> MessagesOut:
    """Group messages forwarded by the brand's bot or WeCom's archive (up to 500 a call):
    each is an event; one that breaks the community's rules is a violation with the ladder's
    action as an owner task; alert keywords alert the owner. A re-sent message id counts once."""
    outcomes = messages.ingest(session, principal, body.messages)
    return MessagesOut(
        results=[
            MessageResult(
                message_id=o.message_id, group_id=o.group_id, duplicate=o.duplicate,
                violation=ViolationOut.model_validate(o.violation) if o.violation else None,
                alert_words=o.alert_words,
            )
            for o in outcomes
        ]
    )  # fmt: skip


@router.get("/communities/{community_id}/violations", response_model=Page[ViolationOut])
def list_violations(
    community_id: str,
    principal: PrincipalDep,
    session: SessionDep,
    cursor: str | None = None,
    limit: Limit = 50,
) -> Page[ViolationOut]:
    community = service.get(session, principal, community_id)
    service.require_whole(session, principal, community)
    rows, next_cursor = page_of(
        messages.violations_page(session, community.id, cursor, limit), limit
    )
    return Page(items=[ViolationOut.model_validate(v) for v in rows], next_cursor=next_cursor)


@router.get("/communities/{community_id}/tier-moves", response_model=list[TierMoveOut])
def list_tier_moves(
    community_id: str, principal: PrincipalDep, session: SessionDep, as_of: date | None = None
) -> list[TierMoveOut]:
    """Members whose date-derived tier has changed as of ``as_of`` (default today)."""
    community = service.get(session, principal, community_id)
    service.require_whole(session, principal, community)
    today = as_of or _today(session, community)
    return [_move_out(m, today) for m in service.tier_moves(session, community, today)]


@router.post("/communities/{community_id}/tier-moves", response_model=list[TierMoveOut])
def offer_tier_moves(
    community_id: str,
    principal: PrincipalDep,
    session: SessionDep,
    runtime: RuntimeDep,
    as_of: date | None = None,
) -> list[TierMoveOut]:
    """Create an owner task per due move (once per member and tier), with the entry link."""
    community = service.get(session, principal, community_id)
    service.authorize(principal, service.WRITE)
    service.require_whole(session, principal, community)
    today = as_of or _today(session, community)
    entry = present(session, runtime.settings.base_url, community, principal).entry_url
    return [
        _move_out(m, today, task_id)
        for m, task_id in service.offer_moves(session, community, today, entry)
    ]


def _today(session: Session, community: Community) -> date:
    """Today in the workspace's time zone (a birthday turns over at local midnight)."""
    from zoneinfo import ZoneInfo

    from liebian.kit.clock import utcnow
    from liebian.workspaces.models import Workspace

    ws = session.get(Workspace, community.workspace_id)
    return utcnow().astimezone(ZoneInfo(ws.timezone if ws else "Asia/Shanghai")).date()


def _move_out(move: service.TierMove, today: date, task_id: str | None = None) -> TierMoveOut:
    return TierMoveOut(
        member_id=move.member.id, contact_id=move.member.contact_id,
        group_id=move.member.group_id, from_tier=move.member.tier, to_tier=move.to_tier,
        as_of=today, task_id=task_id,
    )  # fmt: skip


@router.get("/communities/{community_id}/metrics", response_model=metrics.MetricsOut)
async def community_metrics(
    community_id: str,
    principal: PrincipalDep,
    runtime: RuntimeDep,
    from_: Annotated[datetime | None, Query(alias="from")] = None,
    to: datetime | None = None,
    by: metrics.By = "group",
) -> Response:
    """Per group, tier or community, by local day and over the range (default: 30 days).
    The document is MetricsOut's, written without a model per day row (≈91,000 of them for
    1,000 groups over 90 days: validating and serializing them cost more than the query)."""

    def answer() -> bytes:
        from liebian.kit.clock import utcnow
        from liebian.workspaces.models import Workspace

        with runtime.read_sessions() as session:
            community = service.get(session, principal, community_id)
            ws = session.get(Workspace, community.workspace_id)
            tz = ws.timezone if ws else "Asia/Shanghai"
            # A data scope of some groups: their own rows only (by group).
            groups = service.member_groups(session, principal, community, None)
            if groups is not None and by != "group":
                service.require_whole(session, principal, community)
        end = to or utcnow()
        start = from_ or end - timedelta(days=30)
        if start >= end or end - start > timedelta(days=400):
            from liebian.kit.errors import Invalid

            raise Invalid(
                "from must be before to, at most 400 days apart", details={"field": "from"}
            )
        store = runtime.event_store
        assert store is not None
        if getattr(store, "community_days_table", None) and store.rollup_zone(
            principal.workspace_id
        ) != check_tz(tz):
            # The day counts are kept in the workspace's rollup zone (as the campaign
            # dashboard's): re-key a workspace created in another zone once; until then the
            # days are counted from the events (the same figures).
            store.set_rollup_zone(principal.workspace_id, tz)
        result = metrics.compute(store, principal.workspace_id, community_id, start, end, by, tz)
        with runtime.read_sessions() as session:
            invited = repository.invitations_made(session, community_id, start, end, by)
            members = repository.members_now(session, community_id, by)
        for row in result.summary:
            row.invitations = invited.get(row.key, 0)
            row.members = members.get(row.key, 0)
        if groups is not None:
            own = set(groups)
            result.days = [d for d in result.days if d[1] in own]
            result.summary = [r for r in result.summary if r.key in own]
        return result.json()

    return Response(await run_in_threadpool(answer), media_type="application/json")


@router.post("/community-groups/{group_id}/announcement", response_model=SendOut)
def announce(
    group_id: str,
    body: AnnounceIn,
    principal: PrincipalDep,
    session: SessionDep,
    runtime: RuntimeDep,
) -> SendOut:
    """Send the community's announcement (群公告) to the group through its channel, once per
    idempotency key."""
    from liebian.communities import welcome

    group = service.get_group(session, principal, group_id)
    service.authorize(principal, service.WRITE)
    community = service.get(session, principal, group.community_id)
    outcome = welcome.send_announcement(session, runtime, community, group, body.idempotency_key)
    return SendOut(
        send_id=outcome.send_id, status=outcome.status, reason=outcome.reason,
        task_id=outcome.task_id,
    )  # fmt: skip


@router.post("/communities/{community_id}/welcome-preview", response_model=PreviewOut)
def welcome_preview(
    community_id: str,
    body: PreviewIn,
    principal: PrincipalDep,
    session: SessionDep,
    runtime: RuntimeDep,
) -> PreviewOut:
    """The welcome as a given contact (or a blank one) would get it, for the template editor."""
    from liebian.communities import templates, welcome

    community = service.get(session, principal, community_id)
    if body.welcome_template is not None:
        templates.check(body.welcome_template, "welcome_template")
    person: dict[str, object] = {}
    if body.external_id:
        contact = contacts.get_by_external_id(session, principal.workspace_id, body.external_id)
        person = welcome.contact_fields(session, runtime.cipher, contact.id)
        if not principal.may_see_pii:
            person.pop("nickname", None)
    ctx = templates.context(
        community={"name": community.name, "id": community.id}, contact=person,
        group={"name": "示例群", "join_url": "", "owner": ""}, member={"invite_code": "ABCDEFGH"},
    )  # fmt: skip
    source = (
        body.welcome_template if body.welcome_template is not None else community.welcome_template
    )
    return PreviewOut(text=templates.render(source, ctx, templates.DEFAULT_WELCOME))


# ── content calendar and material library ──────────────────────────────────────────────────


def _post_out(post: Any) -> PostOut:
    return PostOut.model_validate(post, from_attributes=True)


@router.post("/communities/{community_id}/posts", response_model=PostOut, status_code=201)
def create_post(
    community_id: str, body: PostIn, principal: PrincipalDep, session: SessionDep,
    runtime: RuntimeDep,
) -> PostOut:  # fmt: skip
    """A post of the content calendar (内容日历), sent to the groups' owners at its time."""
    community = service.get(session, principal, community_id)
    service.authorize(principal, service.WRITE)
    post = calendar.create_post(
        session, principal, community, body.model_dump(), calendar.link_policy(runtime)
    )
    return _post_out(post)


@router.get("/communities/{community_id}/posts", response_model=list[PostOut])
def list_posts(community_id: str, principal: PrincipalDep, session: SessionDep) -> list[PostOut]:
    community = service.get(session, principal, community_id)
    return [_post_out(p) for p in calendar.posts_of(session, community.id)]


@router.patch("/community-posts/{post_id}", response_model=PostOut)
def update_post(
    post_id: str, body: PostUpdate, principal: PrincipalDep, session: SessionDep
) -> PostOut:
    """Pause or resume a post."""
    post = calendar.get_post(session, principal, post_id)
    service.authorize(principal, service.WRITE)
    post.status = body.status
    session.flush()
    return _post_out(post)


@router.get("/community-posts/{post_id}/sends", response_model=list[PostSendOut])
def list_post_sends(
    post_id: str, principal: PrincipalDep, session: SessionDep, runtime: RuntimeDep
) -> list[PostSendOut]:
    """Each group and day the post was sent, its short link's clicks, and whether the owner
    has marked the task done (or, through the group's bot, the send's status)."""
    from liebian.channels.models import ChannelSend, StaffTask

    post = calendar.get_post(session, principal, post_id)
    sends = calendar.sends_of(session, post.id)
    through_bots = [s.channel_send_id for s in sends if s.channel_send_id]
    bot_sends = dict(
        session.execute(
            select(ChannelSend.id, ChannelSend.status).where(ChannelSend.id.in_(through_bots))
        ).all()
    ) if through_bots else {}  # fmt: skip
    tasks = dict(
        session.execute(
            select(StaffTask.id, StaffTask.status).where(
                StaffTask.id.in_([s.task_id for s in sends if s.task_id])
            )
        ).all()
    )
    clicks = calendar.clicks_by_link(
        runtime.event_store, principal.workspace_id, [s.link_id for s in sends if s.link_id]
    )
    wecom = wecom_progress(session, [s.wecom_mass_send_id for s in sends if s.wecom_mass_send_id])
    return [
        PostSendOut(
            id=s.id, post_id=s.post_id, group_id=s.group_id, slot=s.slot, short_url=s.short_url,
            link_id=s.link_id, task_id=s.task_id, task_status=tasks.get(s.task_id or ""),
            channel_send_id=s.channel_send_id, send_status=bot_sends.get(s.channel_send_id or ""),
            wecom_mass_send_id=s.wecom_mass_send_id,
            wecom_progress=wecom.get(s.wecom_mass_send_id or ""),
            clicks=clicks.get(s.link_id or "", 0), created_at=s.created_at,
        )
        for s in sends
    ]  # fmt: skip


def wecom_progress(session: Session, ids: list[str]) -> dict[str, str]:
    if not ids:
        return {}
    from liebian.connectors.wecom import group_sends
    from liebian.connectors.wecom.models import WecomMassSend

    rows = session.scalars(select(WecomMassSend).where(WecomMassSend.id.in_(ids)))
    return {r.id: group_sends.view(r).progress for r in rows}


@router.get("/communities/{community_id}/preview-link", response_model=PreviewLinkOut)
def preview_link(
    community_id: str, principal: PrincipalDep, session: SessionDep, runtime: RuntimeDep
) -> PreviewLinkOut:
    """A signed address (15 minutes) of the entry page as a phone shows it, for the console's
    phone-size frame: no page view is recorded and the join button is disabled."""
    import time
    from urllib.parse import urlencode

    from liebian.communities.pages import PREVIEW_TTL, preview_signature

    community = service.get(session, principal, community_id)
    expires = int(time.time()) + PREVIEW_TTL
    sig = preview_signature(runtime.secret, community.id, expires)
    query = urlencode({"exp": expires, "sig": sig})
    return PreviewLinkOut(url=f"/admin/preview/c/{community.id}?{query}", expires_at=expires)


@router.post("/communities/{community_id}/wecom-posts", response_model=WecomPostsOut)
def post_to_wecom_groups(
    community_id: str, body: WecomPostIn, principal: PrincipalDep, runtime: RuntimeDep
) -> WecomPostsOut:
    """A group mass post (企业群发) to the community's WeCom customer groups: one WeCom task
    per group owner (``owner_wecom_userid``), which the owner confirms in the WeCom app.
    Groups at WeCom's monthly cap are left out (``over_cap``); groups without a chat id or an
    owner userid are ``skipped``. The same ``idempotency_key`` returns the recorded tasks."""
    return WecomPostsOut.model_validate(
        wecom_posts.post(
            runtime,
            principal,
            community_id,
            idempotency_key=body.idempotency_key,
            text=body.text,
            group_ids=body.group_ids,
        )
    )


@router.get("/communities/{community_id}/wecom-posts", response_model=WecomPostsOut)
def list_wecom_posts(
    community_id: str, principal: PrincipalDep, session: SessionDep
) -> WecomPostsOut:
    """The community's WeCom group mass posts (the operator's and the calendar's), newest
    first, with each group's state as WeCom last reported it: pending (the owner has not
    confirmed), sent, failed."""
    community = service.get(session, principal, community_id)
    return WecomPostsOut.model_validate(wecom_posts.listing(session, principal, community))


@router.post("/community-materials", response_model=MaterialOut, status_code=201)
def add_material(body: MaterialIn, principal: PrincipalDep, session: SessionDep) -> MaterialOut:
    """The material library (标题库 / 内容库 / 图片库) posts draw from."""
    material = calendar.add_material(session, principal, body.kind, body.body)
    return MaterialOut.model_validate(material, from_attributes=True)


@router.get("/community-materials", response_model=list[MaterialOut])
def list_materials(
    principal: PrincipalDep, session: SessionDep, kind: str | None = None
) -> list[MaterialOut]:
    return [
        MaterialOut.model_validate(m, from_attributes=True)
        for m in calendar.materials(session, principal, kind)
    ]
