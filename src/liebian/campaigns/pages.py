"""Participant H5 pages: invite landing (/p), group-buy share page (/g), assist page (/a).

Public (no key), so they show only what a participant may see: masked nicknames, progress,
prices. Jinja2 with autoescape renders every value, so a nickname like ``<script>`` is text.
Friend help / bargain actions themselves are not offered on external H5 (WeChat's rules);
these pages show status and leave the action to the brand's mini-program or app.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from liebian.app.deps import RuntimeDep, SessionDep, participant_rate_limit
from liebian.campaigns import referrals, repository, service
from liebian.campaigns.models import Assist, Campaign, Group
from liebian.campaigns.schemas import AssistConfig, GroupBuyConfig
from liebian.contacts import service as contacts
from liebian.contacts.models import Contact
from liebian.kit.errors import NotFound
from liebian.kit.page_security import PAGE_HEADERS

TEMPLATES = Path(__file__).resolve().parent.parent / "web" / "templates"
_env = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=select_autoescape(default=True, default_for_string=True),
)
_STATUS_ZH = {
    "open": "进行中", "success": "拼团成功", "failed": "拼团失败", "unlocked": "已完成",
    "expired": "已过期", "active": "进行中", "paused": "已暂停", "ended": "已结束", "draft": "未开始",
}  # fmt: skip
# The public rate limits (per IP and visitor) apply to every participant page.
router = APIRouter(include_in_schema=False, dependencies=[Depends(participant_rate_limit)])


def _yuan(fen: int | None) -> str:
    if fen is None:
        return ""
    whole, cents = divmod(fen, 100)
    return f"{whole}" if cents == 0 else f"{whole}.{cents:02d}"


def _html(name: str, **context: Any) -> HTMLResponse:
    body = _env.get_template(name).render(**context)
    # Participants refresh to see progress: never serve a stale count from a cache.
    return HTMLResponse(body, headers={"cache-control": "no-store", **PAGE_HEADERS})


def _percent(done: int, total: int) -> int:
    return 0 if total <= 0 else min(100, round(100 * done / total))


def _local(ts: datetime, tz: str) -> str:
    return ts.astimezone(ZoneInfo(tz)).strftime("%m-%d %H:%M")


@router.get("/p/{campaign_id}/{invite_code}", response_class=HTMLResponse)
def invite_page(
    campaign_id: str, invite_code: str, session: SessionDep, runtime: RuntimeDep
) -> HTMLResponse:
    campaign = session.get(Campaign, campaign_id)
    participant = (
        repository.participant_by_code(session, campaign_id, invite_code) if campaign else None
    )
    if campaign is None or participant is None:
        raise NotFound("this invite link is not valid", code="invite_not_found")
    config = service.config_of(campaign)
    progress = referrals.progress(session, campaign, participant)
    counted = int(progress["counted"])  # type: ignore[call-overload]
    nxt = progress["next"]
    inviter = contacts.public_nickname(runtime.cipher, session.get(Contact, participant.contact_id))
    return _html(
        "fission_invite.html",
        title=campaign.name, campaign=campaign, inviter=inviter, counted=counted, next_tier=nxt,
        percent=_percent(counted, getattr(nxt, "invites", 0) or 0), tiers=progress["tiers"],
        invitee_reward=getattr(config, "invitee_reward", None), invite_code=participant.invite_code,
        status=campaign.status, status_zh=_STATUS_ZH.get(campaign.status, campaign.status),
    )  # fmt: skip


@router.get("/g/{group_id}", response_class=HTMLResponse)
def group_page(group_id: str, session: SessionDep, runtime: RuntimeDep) -> HTMLResponse:
    group = session.get(Group, group_id)
    if group is None:
        raise NotFound("this group does not exist", code="group_not_found")
    campaign = session.get(Campaign, group.campaign_id)
    assert campaign is not None
    config = service.config_of(campaign)
    assert isinstance(config, GroupBuyConfig)
    members = repository.group_members(session, group.id)
    people = repository.by_ids(session, Contact, {m.contact_id for m in members})
    return _html(
        "fission_group.html",
        title=f"{config.product_name} · {group.size}人团", group=group, product_name=config.product_name,
        price=_yuan(group.price), original_price=_yuan(config.original_price),
        status_zh=_STATUS_ZH.get(group.status, group.status), percent=_percent(group.member_count, group.size),
        deadline=_local(group.expires_at, runtime.settings.default_timezone),
        members=[{"name": contacts.public_nickname(runtime.cipher, people.get(m.contact_id)), "is_leader": m.is_leader} for m in members],
    )  # fmt: skip


@router.get("/a/{assist_id}", response_class=HTMLResponse)
def assist_page(assist_id: str, session: SessionDep, runtime: RuntimeDep) -> HTMLResponse:
    assist = session.get(Assist, assist_id)
    if assist is None:
        raise NotFound("this activity does not exist", code="assist_not_found")
    campaign = session.get(Campaign, assist.campaign_id)
    assert campaign is not None
    config = service.config_of(campaign)
    assert isinstance(config, AssistConfig)
    helps = repository.assist_helps(session, assist.id)
    people = repository.by_ids(
        session, Contact, {h.helper_contact_id for h in helps} | {assist.owner_contact_id}
    )
    return _html(
        "fission_assist.html",
        title=campaign.name, campaign=campaign, assist=assist,
        owner=contacts.public_nickname(runtime.cipher, people.get(assist.owner_contact_id)),
        price_now=_yuan(assist.price_now), status_zh=_STATUS_ZH.get(assist.status, assist.status),
        percent=_percent(assist.helpers_count, assist.helpers_required),
        helpers=[{"name": contacts.public_nickname(runtime.cipher, people.get(h.helper_contact_id)), "cut": _yuan(h.cut) if h.cut else ""} for h in helps],
        mini_program=campaign.template is not None and _is_mini_program(campaign.template),
    )  # fmt: skip


def _is_mini_program(template_key: str) -> bool:
    from liebian.campaigns.templates import get_template

    try:
        return get_template(template_key).channel == "mini_program"
    except Exception:  # a template removed since the campaign was made
        return False
