"""HTTP for running a campaign: lifecycle (launch/schedule, pause, resume, end, extend, add
stock, duplicate, change log — rules in ``campaigns/lifecycle.py``) and its live dashboard and
fission tree (``campaigns/dashboard.py``)."""

from __future__ import annotations

import contextlib
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from liebian.app.deps import PrincipalDep, RuntimeDep, SessionDep
from liebian.app.runtime import Runtime
from liebian.campaigns import dashboard, lifecycle, participant_token, schedules, service
from liebian.campaigns.api import campaign_out
from liebian.campaigns.lint import lint_fields
from liebian.campaigns.schemas import (
    CampaignChangeOut,
    CampaignChangePage,
    CampaignOut,
    DashboardOut,
    LintFinding,
    TreeOut,
)
from liebian.events.store.duckdb_budget import DuckDBBudget
from liebian.kit.auth import Role
from liebian.kit.pagination import encode_cursor
from liebian.kit.schemas import StrictModel, error_responses
from liebian.links.domains import public_base_url
from liebian.links.qr import render_qr
from liebian.workspaces.repository import get_workspace

router = APIRouter(tags=["campaigns"])
_ERRORS = error_responses(401, 403, 404, 409, 422)


class LaunchBody(StrictModel):
    starts_at: datetime | None = Field(
        default=None,
        description="later than now: a scheduled launch (the pages say 「活动尚未开始」 until "
        "then); without a zone it is read in the workspace's time zone",
    )
    ends_at: datetime | None = Field(
        default=None,
        description="when the campaign ends by itself (the scheduler ends it); without a zone "
        "the workspace's; default: the rules' duration_days from the start",
    )


class ExtendBody(StrictModel):
    ends_at: datetime = Field(description="without a zone: the workspace's time zone")


class StockBody(StrictModel):
    units: int = Field(ge=1, le=10_000_000, description="how many units to add to config.stock")


class DuplicateBody(StrictModel):
    name: str | None = Field(default=None, min_length=1, max_length=200)


def _out(campaign: Any) -> CampaignOut:
    return CampaignOut.model_validate(campaign_out(campaign))


@router.post("/campaigns/{campaign_id}/launch", response_model=CampaignOut, responses=_ERRORS)
def launch(
    campaign_id: str, principal: PrincipalDep, session: SessionDep, body: LaunchBody | None = None
) -> CampaignOut:
    """Draft → active, now or at ``starts_at``. Copy lint errors refuse it (422)."""
    return _out(
        lifecycle.launch(
            session,
            principal,
            campaign_id,
            starts_at=body.starts_at if body else None,
            ends_at=body.ends_at if body else None,
        )
    )


@router.post("/campaigns/{campaign_id}/pause", response_model=CampaignOut, responses=_ERRORS)
def pause(campaign_id: str, principal: PrincipalDep, session: SessionDep) -> CampaignOut:
    return _out(lifecycle.pause(session, principal, campaign_id))


@router.post("/campaigns/{campaign_id}/resume", response_model=CampaignOut, responses=_ERRORS)
def resume(campaign_id: str, principal: PrincipalDep, session: SessionDep) -> CampaignOut:
    return _out(lifecycle.resume(session, principal, campaign_id))


@router.post("/campaigns/{campaign_id}/end", response_model=CampaignOut, responses=_ERRORS)
def end(campaign_id: str, principal: PrincipalDep, session: SessionDep) -> CampaignOut:
    """End early. Rewards already earned stay; nothing new can start."""
    return _out(lifecycle.end(session, principal, campaign_id))


@router.post("/campaigns/{campaign_id}/extend", response_model=CampaignOut, responses=_ERRORS)
def extend(
    campaign_id: str, body: ExtendBody, principal: PrincipalDep, session: SessionDep
) -> CampaignOut:
    return _out(lifecycle.extend(session, principal, campaign_id, body.ends_at))


@router.post("/campaigns/{campaign_id}/stock", response_model=CampaignOut, responses=_ERRORS)
def add_stock(
    campaign_id: str, body: StockBody, principal: PrincipalDep, session: SessionDep
) -> CampaignOut:
    """Add units to the stock (a new rules version; logged)."""
    return _out(lifecycle.add_stock(session, principal, campaign_id, body.units))


@router.post(
    "/campaigns/{campaign_id}/duplicate",
    status_code=201,
    response_model=CampaignOut,
    responses=_ERRORS,
)
def duplicate(
    campaign_id: str,
    principal: PrincipalDep,
    session: SessionDep,
    body: DuplicateBody | None = None,
) -> CampaignOut:
    """A new draft with the same rules and copy."""
    name = body.name if body else None
    return _out(lifecycle.duplicate(session, principal, campaign_id, name=name))


@router.get(
    "/campaigns/{campaign_id}/changes", response_model=CampaignChangePage, responses=_ERRORS
)
def changes(
    campaign_id: str,
    principal: PrincipalDep,
    session: SessionDep,
    cursor: str | None = None,
    limit: int = 50,
) -> CampaignChangePage:
    """The change log, newest first: every lifecycle action and edit with before/after."""
    limit = max(1, min(limit, 200))
    rows = lifecycle.changes(
        session, principal.workspace_id, campaign_id, cursor=cursor, limit=limit
    )
    nxt = encode_cursor(rows[limit - 1].id) if len(rows) > limit else None
    return CampaignChangePage(
        items=[CampaignChangeOut.model_validate(r, from_attributes=True) for r in rows[:limit]],
        next_cursor=nxt,
    )


# ── the live dashboard and the fission tree ──────────────────────────────────────────────


@router.get(
    "/campaigns/{campaign_id}/dashboard",
    response_model=DashboardOut,
    responses=error_responses(401, 403, 404, 422),
)
def campaign_dashboard(
    campaign_id: str,
    principal: PrincipalDep,
    session: SessionDep,
    runtime: RuntimeDep,
    tz: str | None = None,
) -> DashboardOut:
    """实时数据看板: participants, 分享率, 点击率, 转化率, K-factor, reward cost, GMV, ROI,
    CAC; the funnel 看到→参与→分享→好友点击→好友参与→好友转化; by channel and by day
    (workspace time zone unless ``tz``). Fresh within ~2 s of the actions."""
    principal.require(Role.analyst)
    campaign = service.get(session, principal.workspace_id, campaign_id)
    own_zone = _workspace_tz(session, principal.workspace_id, runtime)
    zone = tz or own_zone
    store = runtime.event_store
    assert store is not None
    if store.rollup_zone(principal.workspace_id) != own_zone:
        # The rollup keeps days in the workspace's zone (a workspace created in another zone
        # than the default): re-key it once; until then days are computed from the events.
        store.set_rollup_zone(principal.workspace_id, own_zone)
    budget: DuckDBBudget | None = runtime.extras.get("duckdb_budget")
    with budget.analytics() if budget is not None else contextlib.nullcontext():
        out = dashboard.dashboard(session, store, campaign, tz=zone)
    return DashboardOut.model_validate(out)


def _workspace_tz(session: Session, workspace_id: str, runtime: Runtime) -> str:
    workspace = get_workspace(session, workspace_id)
    return workspace.timezone if workspace is not None else runtime.settings.default_timezone


@router.get(
    "/campaigns/{campaign_id}/tree",
    response_model=TreeOut,
    responses=error_responses(401, 403, 404, 422),
)
def fission_tree(
    campaign_id: str,
    principal: PrincipalDep,
    session: SessionDep,
    runtime: RuntimeDep,
    parent: str | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> TreeOut:
    """Who brought whom: ``parent``'s direct invitees (the roots without it), widest branch
    first, each with its depth, direct invitees and whole-branch size; ``next_cursor`` pages
    a level. Nicknames are masked."""
    principal.require(Role.analyst)
    campaign = service.get(session, principal.workspace_id, campaign_id)
    try:
        offset = int(cursor) if cursor else 0
    except ValueError:
        offset = -1
    out = dashboard.tree(
        session, runtime.cipher, campaign, parent=parent, offset=offset,
        limit=max(1, min(limit, 200)),
    )  # fmt: skip
    return TreeOut.model_validate(out)


class ParticipantTokenKeyOut(BaseModel):
    key: str
    format: str
    helper: str


@router.get(
    "/participant-token-key",
    response_model=ParticipantTokenKeyOut,
    responses=error_responses(401, 403),
)
def participant_token_key(principal: PrincipalDep, runtime: RuntimeDep) -> ParticipantTokenKeyOut:
    """The workspace's key for signing participant tokens (admins; keep it on your server).
    Pages take ``?t=<token>`` and then act for that user: join, open or join a group, help."""
    principal.require(Role.admin)
    return ParticipantTokenKeyOut(
        key=participant_token.workspace_key(runtime.secret, principal.workspace_id),
        format="v1.<base64url(external_id)>.<expiry unix seconds>.<base64url(HMAC-SHA256(key,"
        " 'v1.<base64url(external_id)>.<expiry>'))>",
        helper="liebian.client.participant_token(key, external_id, ttl_seconds=3600)",
    )


# ── share kit and copy lint (the console's campaign page and wizard) ───────────────────────


class LintBody(StrictModel):
    name: str = Field(default="", max_length=200)
    share_text: str = Field(default="", max_length=500)
    headline: str = Field(default="", max_length=200)
    body: str = Field(default="", max_length=500)


class LintOut(BaseModel):
    ok: bool = Field(description="no error-level finding: the copy may go live")
    findings: list[LintFinding]


@router.post("/campaigns/lint", response_model=LintOut, responses=error_responses(401, 422))
def lint_copy(body: LintBody, principal: PrincipalDep) -> LintOut:
    """Lint campaign copy as the operator types (诱导分享 wording): errors block going live,
    warnings do not."""
    fields = [(k, v) for k, v in body.model_dump().items() if v]
    findings = [
        LintFinding(code=w.code, severity=w.severity, field=w.field, matched=w.matched,
                    message=w.message, suggestion=w.suggestion)
        for w in lint_fields([(("config." + k) if k in ("headline", "body") else k, v) for k, v in fields])
    ]  # fmt: skip
    return LintOut(ok=not any(f.severity == "error" for f in findings), findings=findings)


class ShareChannel(BaseModel):
    channel: str
    entry_url: str
    qr_url: str


class ShareKitOut(BaseModel):
    campaign_id: str
    entry_url: str
    share_text: str
    channels: list[ShareChannel]
    lint: LintOut


DEFAULT_CHANNELS = ("wechat_group", "moments", "official_account", "wecom", "sms")


@router.get(
    "/campaigns/{campaign_id}/share-kit",
    response_model=ShareKitOut,
    responses=error_responses(401, 403, 404),
)
def share_kit(
    campaign_id: str,
    principal: PrincipalDep,
    session: SessionDep,
    runtime: RuntimeDep,
    channel: Annotated[list[str] | None, Query(max_length=20)] = None,
) -> ShareKitOut:
    """The campaign's entry link and QR per channel (``?ch=`` so the dashboard breaks down
    by it), the share copy and its lint result."""
    campaign = service.get(session, principal.workspace_id, campaign_id)
    base = public_base_url(session, principal.workspace_id, runtime.settings.base_url)
    entry = f"{base}/p/{campaign.id}"
    names = [c[:64] for c in (channel or DEFAULT_CHANNELS) if c.strip()]
    findings = service.lint(campaign.name, campaign.share_text, service.config_of(campaign))
    return ShareKitOut(
        campaign_id=campaign.id, entry_url=entry, share_text=campaign.share_text,
        channels=[
            ShareChannel(channel=c, entry_url=f"{entry}?{urlencode({'ch': c})}",
                         qr_url=f"/api/v1/campaigns/{campaign.id}/entry-qr.png?{urlencode({'ch': c})}")
            for c in names
        ],
        lint=LintOut(
            ok=not any(w.severity == "error" for w in findings),
            findings=[LintFinding(code=w.code, severity=w.severity, field=w.field, matched=w.matched,
                                  message=w.message, suggestion=w.suggestion) for w in findings],
        ),
    )  # fmt: skip


@router.get(
    "/campaigns/{campaign_id}/entry-qr.png",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}, **error_responses(401, 403, 404, 422)},
)
def entry_qr(
    campaign_id: str,
    principal: PrincipalDep,
    session: SessionDep,
    runtime: RuntimeDep,
    ch: Annotated[str, Query(max_length=64)] = "",
    size: Annotated[int, Query(ge=64, le=2048)] = 512,
) -> Response:
    """A QR code of the campaign's entry link for one channel (scans count in that channel)."""
    campaign = service.get(session, principal.workspace_id, campaign_id)
    base = public_base_url(session, principal.workspace_id, runtime.settings.base_url)
    url = f"{base}/p/{campaign.id}" + (f"?{urlencode({'ch': ch})}" if ch else "")
    png = render_qr(url, fmt="png", size=size)
    return Response(png, media_type="image/png", headers={"cache-control": "private, no-cache"})


# ── weekly schedules (周三秒杀, 周五拼团): campaigns/schedules.py ──────────────────────────


class ScheduleBody(StrictModel):
    name: str = Field(min_length=1, max_length=100, description="e.g. 周三秒杀; each copy is named "
                      "'<name> MM-DD'")  # fmt: skip
    weekday: int = Field(ge=0, le=6, description="0 = Monday … 6 = Sunday")
    start_time: str = Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$", description="HH:MM, local")
    duration_minutes: int = Field(ge=1, le=schedules.MAX_DURATION_MINUTES)
    timezone: str | None = Field(
        default=None, max_length=64, description="IANA zone; default the workspace's"
    )


class ScheduleRunOut(BaseModel):
    occurrence: str
    campaign_id: str
    created_at: datetime


class ScheduleOut(BaseModel):
    id: str
    source_campaign_id: str
    name: str
    weekday: int
    start_time: str
    duration_minutes: int
    timezone: str
    enabled: bool
    next_run_at: datetime
    description: str
    runs: list[ScheduleRunOut]


class ScheduleList(BaseModel):
    items: list[ScheduleOut]


class ScheduleEnableBody(StrictModel):
    enabled: bool


def _schedule_out(session: Session, s: Any) -> ScheduleOut:
    return ScheduleOut(
        id=s.id, source_campaign_id=s.source_campaign_id, name=s.name, weekday=s.weekday,
        start_time=s.start_time, duration_minutes=s.duration_minutes, timezone=s.timezone,
        enabled=s.enabled, next_run_at=s.next_run_at, description=schedules.describe(s),
        runs=[ScheduleRunOut(occurrence=r.occurrence, campaign_id=r.campaign_id, created_at=r.created_at)
              for r in schedules.runs_of(session, s.id)],
    )  # fmt: skip


@router.post(
    "/campaigns/{campaign_id}/schedules",
    status_code=201,
    response_model=ScheduleOut,
    responses=_ERRORS,
)
def create_schedule(
    campaign_id: str, body: ScheduleBody, principal: PrincipalDep, session: SessionDep
) -> ScheduleOut:
    """A weekly rhythm: every ``weekday`` at ``start_time`` a copy of this campaign (rules,
    copy, poster) goes live for ``duration_minutes`` and then ends by itself."""
    schedule = schedules.create(
        session, principal, campaign_id, name=body.name, weekday=body.weekday,
        start_time=body.start_time, duration_minutes=body.duration_minutes, timezone=body.timezone,
    )  # fmt: skip
    return _schedule_out(session, schedule)


@router.get("/campaign-schedules", response_model=ScheduleList, responses=_ERRORS)
def list_schedules(
    principal: PrincipalDep, session: SessionDep, campaign_id: str | None = None
) -> ScheduleList:
    """The workspace's weekly schedules (of one source campaign with ``campaign_id``)."""
    items = schedules.list_for(session, principal.workspace_id, campaign_id)
    return ScheduleList(items=[_schedule_out(session, s) for s in items])


@router.patch("/campaign-schedules/{schedule_id}", response_model=ScheduleOut, responses=_ERRORS)
def enable_schedule(
    schedule_id: str, body: ScheduleEnableBody, principal: PrincipalDep, session: SessionDep
) -> ScheduleOut:
    """Pause or resume a rhythm (resumed: from its next occurrence, none missed is made up)."""
    return _schedule_out(
        session, schedules.set_enabled(session, principal, schedule_id, body.enabled)
    )


@router.delete("/campaign-schedules/{schedule_id}", status_code=204, responses=_ERRORS)
def delete_schedule(schedule_id: str, principal: PrincipalDep, session: SessionDep) -> Response:
    """Stop the rhythm; campaigns it already started stay as they are."""
    schedules.delete(session, principal, schedule_id)
    return Response(status_code=204)


# ── the campaign page's lists ─────────────────────────────────────────────────────────────


class ParticipantRow(BaseModel):
    participant_id: str
    external_id: str | None
    nickname: str = Field(description="masked (王**)")
    channel: str | None
    joined_at: datetime
    referrer_participant_id: str | None
    status: str = Field(description="how they came in: their referral's state, or direct")
    invites: int = Field(description="people they brought in directly")
    config_version: int = Field(description="the rules version they are paid by")


class ParticipantList(BaseModel):
    items: list[ParticipantRow]
    next_cursor: str | None


class ActivityRow(BaseModel):
    id: str
    kind: str = Field(description="group | assist")
    owner: str | None = Field(description="the leader's / owner's external id")
    status: str
    done: int = Field(description="members joined / helpers so far")
    needed: int
    price: int | None = Field(description="分: the group price, or the bargain's price now")
    expires_at: datetime
    created_at: datetime


class ActivityList(BaseModel):
    campaign_id: str
    items: list[ActivityRow]


@router.get(
    "/campaigns/{campaign_id}/participant-list",
    response_model=ParticipantList,
    responses=error_responses(401, 403, 404, 422),
)
def participant_list(
    campaign_id: str,
    principal: PrincipalDep,
    session: SessionDep,
    runtime: RuntimeDep,
    q: Annotated[str | None, Query(max_length=128)] = None,
    status: Annotated[str | None, Query(max_length=32)] = None,
    cursor: str | None = None,
    limit: int = 50,
) -> ParticipantList:
    """Participants, newest first: ``q`` = start of the external id; ``status`` = how they
    came in (approved, held, blocked, … or direct); each with their direct invites (expand
    their branch with ``/tree?parent=``)."""
    principal.require(Role.analyst)
    campaign = service.get(session, principal.workspace_id, campaign_id)
    try:
        offset = int(cursor) if cursor else 0
    except ValueError:
        offset = -1
    out = dashboard.participants(
        session, runtime.cipher, campaign, q=q or None, status=status or None, offset=offset,
        limit=max(1, min(limit, 200)),
    )  # fmt: skip
    return ParticipantList.model_validate(out)


@router.get(
    "/campaigns/{campaign_id}/activities",
    response_model=ActivityList,
    responses=error_responses(401, 403, 404),
)
def activity_list(
    campaign_id: str,
    principal: PrincipalDep,
    session: SessionDep,
    status: Annotated[str | None, Query(max_length=16)] = None,
) -> ActivityList:
    """Group-buy groups or assists (助力/砍价) of the campaign, open ones first (latest 100)."""
    principal.require(Role.analyst)
    campaign = service.get(session, principal.workspace_id, campaign_id)
    return ActivityList.model_validate(dashboard.activities(session, campaign, status=status))
