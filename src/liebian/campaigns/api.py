"""HTTP for campaigns, participants, referrals, group buy and assists: parse, call, shape."""

from __future__ import annotations

from typing import Any, Literal

import orjson
from fastapi import APIRouter, Request, Response
from pydantic import Field
from sqlalchemy.orm import Session

from liebian.app.deps import PrincipalDep, RuntimeDep, SessionDep
from liebian.app.runtime import Runtime
from liebian.campaigns import (
    assists,
    fission_events,
    groups,
    lifecycle,
    referrals,
    repository,
    schemas,
    service,
    writes,
)
from liebian.campaigns.models import Campaign, Participant, Referral
from liebian.campaigns.templates import list_templates
from liebian.contacts import service as contacts
from liebian.contacts.models import Contact
from liebian.kit.auth import Principal, Role
from liebian.kit.crypto import mask_name
from liebian.kit.errors import NotFound
from liebian.kit.ids import new_id
from liebian.kit.pagination import encode_cursor
from liebian.kit.schemas import StrictModel
from liebian.links.domains import public_base_url
from liebian.risk import service as risk_service

router = APIRouter(tags=["campaigns"])

Name = Field(min_length=1, max_length=200)
ExternalId = Field(min_length=1, max_length=128)


class CampaignCreate(StrictModel):
    type: Literal["invite", "group_buy", "assist", "distribution", "poster"]
    name: str = Name
    config: dict[str, Any]
    share_text: str = Field(default="", max_length=500)
    status: Literal["draft", "active"] = "active"


class CampaignFromTemplate(StrictModel):
    template: str = Field(min_length=1, max_length=64)
    name: str | None = Field(default=None, min_length=1, max_length=200)
    overrides: dict[str, Any] | None = None
    status: Literal["draft", "active"] = "active"


class CampaignPatch(StrictModel):
    status: Literal["draft", "active", "paused", "ended"] | None = None
    name: str | None = Field(default=None, min_length=1, max_length=200)
    share_text: str | None = Field(default=None, max_length=500)
    # The whole new config (a new rules version; people who joined keep theirs).
    config: dict[str, Any] | None = None


class JoinBody(StrictModel):
    external_id: str = ExternalId
    referrer_code: str | None = Field(default=None, max_length=32)
    email: str | None = Field(default=None, max_length=320)
    phone: str | None = Field(default=None, max_length=40)
    nickname: str | None = Field(default=None, max_length=100)
    avatar_url: str | None = Field(default=None, max_length=500)
    visitor_id: str | None = Field(default=None, max_length=128)
    device_id: str | None = Field(default=None, max_length=128)
    ip: str | None = Field(default=None, max_length=64)
    user_agent: str | None = Field(default=None, max_length=1000)
    channel: str | None = Field(default=None, max_length=64)


class GroupOpen(StrictModel):
    leader_external_id: str = ExternalId
    size: int | None = Field(default=None, ge=2, le=100)


class GroupJoin(StrictModel):
    external_id: str = ExternalId


class AssistStart(StrictModel):
    external_id: str = ExternalId
    visitor_id: str | None = Field(default=None, max_length=128)
    ip: str | None = Field(default=None, max_length=64)
    user_agent: str | None = Field(default=None, max_length=1000)


class HelpBody(StrictModel):
    external_id: str = ExternalId
    visitor_id: str | None = Field(default=None, max_length=128)
    ip: str | None = Field(default=None, max_length=64)
    user_agent: str | None = Field(default=None, max_length=1000)


def _base(session: Session, principal: Principal, runtime: Runtime) -> str:
    return public_base_url(session, principal.workspace_id, runtime.settings.base_url)


def campaign_out(campaign: Campaign) -> dict[str, Any]:
    config = service.config_of(campaign)
    return {
        "id": campaign.id,
        "type": campaign.type,
        "name": campaign.name,
        "status": campaign.status,
        "config": campaign.config,
        "template": campaign.template,
        "share_text": campaign.share_text,
        "stock_used": campaign.stock_used,
        "budget_used": campaign.budget_used,
        "config_version": campaign.config_version,
        "starts_at": campaign.starts_at,
        "ends_at": campaign.ends_at,
        "created_at": campaign.created_at,
        "updated_at": campaign.updated_at,
        "lint_warnings": [
            {"code": w.code, "severity": w.severity, "field": w.field, "matched": w.matched,
             "message": w.message, "suggestion": w.suggestion}
            for w in service.lint(campaign.name, campaign.share_text, config)
        ],
    }  # fmt: skip


@router.get("/campaigns/templates", response_model=schemas.TemplateList)
def templates(principal: PrincipalDep, industry: str | None = None) -> dict[str, Any]:
    items = [
        {"key": t.key, "industry": t.industry, "type": t.type, "name": t.name,
         "description": t.description, "share_text": t.share_text, "channel": t.channel, "config": dict(t.config)}
        for t in list_templates(industry)  # type: ignore[arg-type]
    ]  # fmt: skip
    return {"items": items}


@router.post("/campaigns", status_code=201, response_model=schemas.CampaignOut)
def create_campaign(
    body: CampaignCreate, principal: PrincipalDep, session: SessionDep
) -> dict[str, Any]:
    campaign = service.create(
        session, principal, campaign_type=body.type, name=body.name, config=body.config,
        share_text=body.share_text, status=body.status,
    )  # fmt: skip
    return campaign_out(campaign)


@router.post("/campaigns/from-template", status_code=201, response_model=schemas.CampaignOut)
def create_from_template(
    body: CampaignFromTemplate, principal: PrincipalDep, session: SessionDep
) -> dict[str, Any]:
    campaign = service.create_from_template(
        session,
        principal,
        template=body.template,
        name=body.name,
        overrides=body.overrides,
        status=body.status,
    )
    return campaign_out(campaign)


@router.get("/campaigns", response_model=schemas.CampaignPage)
def list_campaigns(
    principal: PrincipalDep,
    session: SessionDep,
    type: str | None = None,
    status: str | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> dict[str, Any]:
    limit = max(1, min(limit, 200))
    rows = repository.list_campaigns(
        session, principal.workspace_id, type_=type, status=status,
        cursor=cursor, limit=limit,
    )  # fmt: skip
    return _page([campaign_out(c) for c in rows], limit)


def _page(items: list[dict[str, Any]], limit: int) -> dict[str, Any]:
    if len(items) > limit:
        items = items[:limit]
        return {"items": items, "next_cursor": encode_cursor(items[-1]["id"])}
    return {"items": items, "next_cursor": None}


@router.get("/campaigns/{campaign_id}", response_model=schemas.CampaignOut)
def get_campaign(campaign_id: str, principal: PrincipalDep, session: SessionDep) -> dict[str, Any]:
    return campaign_out(service.get(session, principal.workspace_id, campaign_id))


@router.patch("/campaigns/{campaign_id}", response_model=schemas.CampaignOut)
def patch_campaign(
    campaign_id: str, body: CampaignPatch, principal: PrincipalDep, session: SessionDep
) -> dict[str, Any]:
    campaign = lifecycle.edit(
        session,
        principal,
        campaign_id,
        status=body.status,
        name=body.name,
        share_text=body.share_text,
        config=body.config,
    )
    return campaign_out(campaign)


# ── participants and referrals ────────────────────────────────────────────────────────────


def participant_out(participant: Participant, base: str) -> dict[str, Any]:
    return {
        "participant_id": participant.id,
        "campaign_id": participant.campaign_id,
        "invite_code": participant.invite_code,
        "invite_url": f"{base}/p/{participant.campaign_id}/{participant.invite_code}",
        "poster_url": f"/api/v1/campaigns/{participant.campaign_id}/participants/{participant.id}/poster.png",
        "referrer_participant_id": participant.referrer_participant_id,
        "joined_at": participant.joined_at,
    }


@router.post(
    "/campaigns/{campaign_id}/participants",
    status_code=201,
    response_model=schemas.ParticipantOut,
    responses={
        200: {"model": schemas.ParticipantOut, "description": "joined before: the same participant"}
    },
)
def join_campaign(
    campaign_id: str,
    body: JoinBody,
    response: Response,
    principal: PrincipalDep,
    session: SessionDep,
    runtime: RuntimeDep,
) -> dict[str, Any]:
    """Join (idempotent per external_id: a second call answers 200 with the same participant)."""
    principal.require(Role.operator)
    participant, created = referrals.join(
        session, runtime.cipher, principal.workspace_id, campaign_id,
        referrals.JoinInput(**body.model_dump()),
    )  # fmt: skip
    if not created:
        response.status_code = 200
    return participant_out(participant, _base(session, principal, runtime))


def _participant(
    session: Session, principal: Principal, campaign_id: str, participant_id: str
) -> Participant:
    participant = repository.get(session, Participant, principal.workspace_id, participant_id)
    if participant is None or participant.campaign_id != campaign_id:
        raise NotFound(
            f"no participant {participant_id!r} in this campaign", code="participant_not_found"
        )
    return participant


@router.get(
    "/campaigns/{campaign_id}/participants/{participant_id}",
    response_model=schemas.ParticipantDetail,
)
def get_participant(
    campaign_id: str,
    participant_id: str,
    principal: PrincipalDep,
    session: SessionDep,
    runtime: RuntimeDep,
) -> dict[str, Any]:
    participant = _participant(session, principal, campaign_id, participant_id)
    campaign = service.get(session, principal.workspace_id, campaign_id)
    progress = referrals.progress(session, campaign, participant)
    nxt = progress["next"]
    out = participant_out(participant, _base(session, principal, runtime))
    contact = session.get(Contact, participant.contact_id)
    out["external_id"] = contact.external_id if contact else None
    out["qualified_invites"] = progress["counted"]
    out["next_tier_invites"] = getattr(nxt, "invites", None)
    return out


@router.get("/campaigns/{campaign_id}/leaderboard", response_model=schemas.LeaderboardOut)
def leaderboard(
    campaign_id: str,
    principal: PrincipalDep,
    session: SessionDep,
    runtime: RuntimeDep,
    limit: int = 20,
) -> dict[str, Any]:
    campaign = service.get(session, principal.workspace_id, campaign_id)
    rows = repository.leaderboard(session, campaign.id, max(1, min(limit, 100)))
    parts = repository.by_ids(session, Participant, {pid for pid, _ in rows})
    people = repository.by_ids(session, Contact, {p.contact_id for p in parts.values()})
    items = []
    for rank, (pid, count) in enumerate(rows, start=1):
        contact = people.get(parts[pid].contact_id) if pid in parts else None
        items.append({
            "rank": rank, "participant_id": pid, "invites": count,
            "external_id": contact.external_id if contact else None,
            "nickname": contacts.public_nickname(runtime.cipher, contact),
        })  # fmt: skip
    return {"items": items}


def referral_items(session: Session, rows: list[Referral]) -> list[dict[str, Any]]:
    assessments = risk_service.for_referrals(session, [r.id for r in rows])
    people = repository.by_ids(
        session,
        Contact,
        {r.referrer_contact_id for r in rows} | {r.referee_contact_id for r in rows},
    )

    def person(contact_id: str, participant_id: str) -> dict[str, Any]:
        contact = people.get(contact_id)
        return {
            "external_id": contact.external_id if contact else None,
            "participant_id": participant_id,
        }

    out = []
    for r in rows:
        assessment = assessments.get(r.id)
        out.append({
            "id": r.id, "campaign_id": r.campaign_id,
            "referrer": person(r.referrer_contact_id, r.referrer_participant_id),
            "referee": person(r.referee_contact_id, r.referee_participant_id),
            "status": r.status, "risk_score": r.risk_score,
            "risk_reasons": assessment.reasons if assessment else [],
            "review_status": assessment.review_status if assessment else "none",
            "qualified": r.qualified_at is not None, "qualified_at": r.qualified_at,
            "invalidated_at": r.invalidated_at, "created_at": r.created_at,
        })  # fmt: skip
    return out


@router.get("/referrals", response_model=schemas.ReferralPage)
def list_referrals(
    principal: PrincipalDep,
    session: SessionDep,
    campaign_id: str | None = None,
    status: str | None = None,
    cursor: str | None = None,
    limit: int = 100,
) -> dict[str, Any]:
    limit = max(1, min(limit, 500))
    rows = repository.list_referrals(
        session, principal.workspace_id, campaign_id=campaign_id, status=status,
        cursor=cursor, limit=limit,
    )  # fmt: skip
    return _page(referral_items(session, rows), limit)


# ── group buy ─────────────────────────────────────────────────────────────────────────────


def group_out(group: groups.GroupView, base: str) -> dict[str, Any]:
    return {
        "group_id": group.id,
        "campaign_id": group.campaign_id,
        "status": group.status,
        "size": group.size,
        "price": group.price,
        "member_count": group.member_count,
        "expires_at": group.expires_at,
        "share_url": f"{base}/g/{group.id}",
        "members": [
            {"external_id": m["external_id"], "is_leader": m["is_leader"], "seat": m["seat"],
             "price": m["price"], "order_status": m["order_status"], "joined_at": m["joined_at"]}
            for m in group.members
        ],
    }  # fmt: skip


@router.post("/campaigns/{campaign_id}/groups", status_code=201, response_model=schemas.GroupOut)
def open_group(
    campaign_id: str,
    body: GroupOpen,
    principal: PrincipalDep,
    session: SessionDep,
    runtime: RuntimeDep,
) -> dict[str, Any]:
    principal.require(Role.operator)
    group = groups.open_group(
        session,
        runtime.cipher,
        principal.workspace_id,
        campaign_id,
        body.leader_external_id,
        size=body.size,
    )
    return group_out(groups.view(session, group), _base(session, principal, runtime))


# Joins and helps are the fission engine's write hot path. The server answers them on the
# lean ASGI path (campaigns/fast_path.py) when the key is cached and the body valid; these
# routes document the contract in OpenAPI and serve everything else (a key to look up, bad
# input to explain). Both hand the work to campaigns/writes.py, which commits it — through the
# group commit on SQLite — before the answer. See docs/decisions/0007 and 0009.


def _json(out: dict[str, Any]) -> Response:
    # orjson straight to bytes (UTC as "Z", as pydantic writes it), skipping the response
    # model's validate-and-dump of a plain dict.
    return Response(orjson.dumps(out, option=orjson.OPT_UTC_Z), media_type="application/json")


# The principal on the event loop when the key is cached (app/deps.py principal_on_loop: the
# custom role's area gate included), else looked up in a worker thread.
FastPrincipalDep = PrincipalDep


@router.post("/groups/{group_id}/join", response_model=schemas.GroupOut)
async def join_group(
    group_id: str, body: GroupJoin, principal: FastPrincipalDep, request: Request
) -> Response:
    principal.require(Role.operator)
    return _json(await join_reply(request.app.state.runtime, principal, group_id, body))


async def join_reply(
    runtime: Runtime, principal: Principal, group_id: str, body: GroupJoin
) -> dict[str, Any]:
    """The join, committed, as its reply (this route and campaigns/fast_path.py)."""
    group, base = await writes.run(
        runtime, writes.join_work(runtime, principal, group_id, body.external_id)
    )
    return group_out(group, base)


@router.get("/groups/{group_id}", response_model=schemas.GroupOut)
def get_group(
    group_id: str, principal: PrincipalDep, session: SessionDep, runtime: RuntimeDep
) -> dict[str, Any]:
    group = groups.get_group(session, principal.workspace_id, group_id)
    return group_out(groups.view(session, group), _base(session, principal, runtime))


# ── assist / bargain ──────────────────────────────────────────────────────────────────────


def assist_out(assist: assists.AssistView, base: str) -> dict[str, Any]:
    return {
        "assist_id": assist.id,
        "campaign_id": assist.campaign_id,
        "owner_external_id": assist.owner_external_id,
        "mode": assist.mode,
        "status": assist.status,
        "unlocked": assist.status == "unlocked",
        "helpers_count": assist.helpers_count,
        "helpers_required": assist.helpers_required,
        "price_now": assist.price_now,
        "expires_at": assist.expires_at,
        "share_url": f"{base}/a/{assist.id}",
        "helpers": [
            {"external_id": h["external_id"], "index": h["helper_index"], "cut": h["cut"],
             "price_after": h["price_after"], "helped_at": h["created_at"]}
            for h in assist.helpers
        ],
    }  # fmt: skip


@router.post("/campaigns/{campaign_id}/assists", status_code=201, response_model=schemas.AssistOut)
def start_assist(
    campaign_id: str,
    body: AssistStart,
    principal: PrincipalDep,
    session: SessionDep,
    runtime: RuntimeDep,
) -> dict[str, Any]:
    principal.require(Role.operator)
    assist = assists.start(
        session, runtime.cipher, principal.workspace_id, campaign_id, body.external_id,
        visitor_id=body.visitor_id, ip=body.ip, user_agent=body.user_agent,
    )  # fmt: skip
    return assist_out(assists.view(session, assist), _base(session, principal, runtime))


def help_out(assist: assists.AssistView, base: str) -> dict[str, Any]:
    """The reply to a help: the activity, and which help this was and what it cut."""
    out = assist_out(assist, base)
    out["cut"] = assist.cut
    out["helper_index"] = assist.helper_index
    return out


@router.post("/assists/{assist_id}/help", response_model=schemas.HelpOut)
async def help_assist(
    assist_id: str, body: HelpBody, principal: FastPrincipalDep, request: Request
) -> Response:
    principal.require(Role.operator)
    return _json(await help_reply(request.app.state.runtime, principal, assist_id, body))


async def help_reply(
    runtime: Runtime, principal: Principal, assist_id: str, body: HelpBody
) -> dict[str, Any]:
    """The help, committed, as its reply (this route and campaigns/fast_path.py)."""
    assist, base = await writes.run(
        runtime,
        writes.help_work(
            runtime, principal, assist_id, body.external_id,
            visitor_id=body.visitor_id, ip=body.ip, user_agent=body.user_agent,
        ),
    )  # fmt: skip
    return help_out(assist, base)


@router.get("/assists/{assist_id}", response_model=schemas.AssistOut)
def get_assist(
    assist_id: str, principal: PrincipalDep, session: SessionDep, runtime: RuntimeDep
) -> dict[str, Any]:
    assist = assists.get_assist(session, principal.workspace_id, assist_id)
    return assist_out(assists.view(session, assist), _base(session, principal, runtime))


@router.get(
    "/campaigns/{campaign_id}/participants/{participant_id}/poster.png",
    response_class=Response,
    responses={
        200: {
            "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}},
            "description": "the poster, a PNG image",
        }
    },
)
def poster(
    campaign_id: str,
    participant_id: str,
    principal: PrincipalDep,
    session: SessionDep,
    runtime: RuntimeDep,
) -> Response:
    """The participant's poster: campaign copy, their nickname, and a QR of their invite link.
    Text is drawn as text (never markup), so nothing a participant typed can alter it."""
    from liebian.campaigns.design import render_for

    participant = _participant(session, principal, campaign_id, participant_id)
    campaign = service.get(session, principal.workspace_id, campaign_id)
    contact = session.get(Contact, participant.contact_id)
    url = participant_out(participant, _base(session, principal, runtime))["invite_url"]
    nickname = runtime.cipher.decrypt(contact.nickname_enc) if contact else None
    if not principal.may_see_pii:
        # Like every other reply to a viewer or analyst: the name masked (王**).
        nickname = mask_name(nickname)
    # The participant opened their poster: a share action (分享率).
    fission_events.emit_now(
        runtime, workspace_id=principal.workspace_id, event="share", event_id=new_id("evt"),
        campaign_id=campaign.id, user_id=contact.external_id if contact else None,
        channel=participant.channel, participant_id=participant.id,
        properties={"via": "poster"},
    )  # fmt: skip
    # The operator's design (campaigns/design.py), as the participant pages draw it.
    png = render_for(
        campaign, runtime.settings.data_dir, url=url, nickname=nickname,
        font_path=runtime.settings.poster_font or None,
    )  # fmt: skip
    return Response(png, media_type="image/png", headers={"cache-control": "private, max-age=300"})


@router.get("/campaigns/{campaign_id}/graph", response_model=schemas.GraphStatsOut)
def referral_graph(
    campaign_id: str, principal: PrincipalDep, session: SessionDep
) -> dict[str, Any]:
    """Depth, K-factor and viral cycle time of the campaign's approved referrals."""
    campaign = service.get(session, principal.workspace_id, campaign_id)
    return referrals.graph_stats(session, campaign)
