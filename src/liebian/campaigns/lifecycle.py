"""A running campaign's lifecycle: launch or schedule, pause, resume, end early, extend, add
stock, edit (copy and rules), duplicate. Every action is one row in ``campaign_changes``.

Rules are versioned: a config change writes ``campaign_versions`` row N+1, and a participant
keeps the version they joined under (``participants.config_version``), so lowering a reward
never cuts one somebody was already promised; raising it applies to people who join from now
on. Campaign-wide limits (stock, budget, dates) always read the current config.

Copy lint errors block going live and editing a live campaign's copy (422
``copy_lint_error``); warnings are returned with the campaign and never block.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from liebian.campaigns import design, schedules, service
from liebian.campaigns.models import Campaign, CampaignChange
from liebian.campaigns.schemas import MAX_STOCK
from liebian.kit.auth import Principal, Role
from liebian.kit.clock import utcnow
from liebian.kit.errors import Conflict, Invalid
from liebian.kit.ids import new_id
from liebian.kit.pagination import paginate

STATUSES = ("draft", "active", "paused", "ended")
# Which status may follow which: ended is final so nobody reopens a settled campaign.
NEXT = {
    "draft": {"active", "ended"},
    "active": {"paused", "ended"},
    "paused": {"active", "ended"},
    "ended": set(),
}
_LIVE = ("active", "paused")


def _iso(ts: datetime | None) -> str | None:
    return ts.isoformat() if ts is not None else None


def _load(session: Session, principal: Principal, campaign_id: str) -> Campaign:
    principal.require(Role.operator)
    return service.get(session, principal.workspace_id, campaign_id)


def _move(
    session: Session, principal: Principal, campaign: Campaign, status: str, action: str,
    *, extra_after: dict[str, Any] | None = None,
) -> Campaign:  # fmt: skip
    if status not in STATUSES:
        raise Invalid(f"status must be one of {', '.join(STATUSES)}", code="invalid_status")
    if status not in NEXT[campaign.status]:
        raise Conflict(
            f"a campaign that is {campaign.status} cannot become {status}",
            code="invalid_status_change",
            details={"from": campaign.status, "to": status},
        )
    if status == "active":
        service.require_clean_copy(
            service.lint(campaign.name, campaign.share_text, service.config_of(campaign))
            + design.lint_design(campaign, design.design_of(campaign))
        )
    before = campaign.status
    campaign.status = status
    campaign.updated_at = utcnow()
    service.record_change(
        session, principal, campaign, action,
        before={"status": before}, after={"status": status, **(extra_after or {})},
    )  # fmt: skip
    session.flush()
    return campaign


def launch(
    session: Session,
    principal: Principal,
    campaign_id: str,
    *,
    starts_at: datetime | None = None,
    ends_at: datetime | None = None,
) -> Campaign:
    """Draft → active now, or at ``starts_at`` (a scheduled launch: participants are refused
    with ``campaign_not_started`` until then), until ``ends_at`` when given (the scheduler
    ends it then: campaigns/schedules.py). Times without a zone are the workspace's."""
    campaign = _load(session, principal, campaign_id)
    now = utcnow()
    zone = schedules.workspace_zone(session, campaign.workspace_id)
    if starts_at is not None:
        starts_at = schedules.as_utc(starts_at, zone)
        if starts_at <= now:
            starts_at = None  # "now" typed a minute late is now
    if ends_at is not None:
        ends_at = schedules.as_utc(ends_at, zone)
        if ends_at <= max(now, starts_at or now):
            raise Invalid(
                "ends_at must be later than the start",
                code="invalid_ends_at",
                details={"field": "ends_at"},
            )
    start = now if starts_at is None else starts_at
    if campaign.status == "draft" and ends_at is not None:
        campaign.starts_at = start
        campaign.ends_at = ends_at
    elif campaign.status == "draft":
        config = service.config_of(campaign)
        if starts_at is not None:
            if campaign.ends_at is not None and start >= campaign.ends_at:
                campaign.ends_at = start + timedelta(days=config.duration_days)
        else:
            # The campaign runs its full duration from the moment it goes live.
            campaign.ends_at = max(
                campaign.ends_at or now, now + timedelta(days=config.duration_days)
            )
        campaign.starts_at = start
    return _move(
        session, principal, campaign, "active", "launch",
        extra_after={"starts_at": _iso(campaign.starts_at), "ends_at": _iso(campaign.ends_at)},
    )  # fmt: skip


def pause(session: Session, principal: Principal, campaign_id: str) -> Campaign:
    return _move(session, principal, _load(session, principal, campaign_id), "paused", "pause")


def resume(session: Session, principal: Principal, campaign_id: str) -> Campaign:
    campaign = _load(session, principal, campaign_id)
    if campaign.status != "paused":
        raise Conflict(
            f"only a paused campaign can resume; this one is {campaign.status}",
            code="invalid_status_change",
            details={"from": campaign.status, "to": "active"},
        )
    return _move(session, principal, campaign, "active", "resume")


def end(session: Session, principal: Principal, campaign_id: str) -> Campaign:
    """End early: nobody joins, opens or helps any more; what was earned stays earned."""
    campaign = _load(session, principal, campaign_id)
    now = utcnow()
    before_end = campaign.ends_at
    if campaign.ends_at is None or campaign.ends_at > now:
        campaign.ends_at = now
    return _move(
        session, principal, campaign, "ended", "end",
        extra_after={"ends_at": _iso(campaign.ends_at), "ends_at_before": _iso(before_end)},
    )  # fmt: skip


def extend(session: Session, principal: Principal, campaign_id: str, ends_at: datetime) -> Campaign:
    campaign = _load(session, principal, campaign_id)
    if campaign.status == "ended":
        raise Conflict(
            "an ended campaign cannot be extended; duplicate it to run it again",
            code="campaign_ended",
        )
    ends_at = schedules.as_utc(ends_at, schedules.workspace_zone(session, campaign.workspace_id))
    now = utcnow()
    if ends_at <= now or (campaign.ends_at is not None and ends_at <= campaign.ends_at):
        raise Invalid(
            f"ends_at must be later than both now and the current end ({_iso(campaign.ends_at)})",
            code="invalid_ends_at",
            details={"field": "ends_at", "current": _iso(campaign.ends_at)},
        )
    if ends_at > campaign.starts_at + timedelta(days=3_650):
        raise Invalid("a campaign runs for at most 10 years", code="invalid_ends_at",
                      details={"field": "ends_at"})  # fmt: skip
    before = campaign.ends_at
    campaign.ends_at = ends_at
    campaign.updated_at = now
    service.record_change(
        session, principal, campaign, "extend",
        before={"ends_at": _iso(before)}, after={"ends_at": _iso(ends_at)},
    )  # fmt: skip
    session.flush()
    return campaign


def _new_config(
    session: Session,
    principal: Principal,
    campaign: Campaign,
    config: dict[str, Any],
    action: str | None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Validate and store a new rules version; the changed keys (before, after). Logged as
    ``action`` unless None (the caller logs it with its other changes)."""
    parsed = service.parse(campaign.type, config)
    stock = getattr(parsed, "stock", None)
    if stock is not None and stock < campaign.stock_used:
        raise Invalid(
            f"stock {stock} is below what is already taken ({campaign.stock_used})",
            code="stock_below_used",
            details={"field": "config.stock", "used": campaign.stock_used},
        )
    budget = getattr(parsed, "budget", None)
    if budget is not None and budget < campaign.budget_used:
        raise Invalid(
            f"budget {budget} 分 is below what is already spent ({campaign.budget_used} 分)",
            code="budget_below_used",
            details={"field": "config.budget", "used": campaign.budget_used},
        )
    dumped = parsed.model_dump(mode="json")
    if dumped == campaign.config:
        return {}, {}
    before = campaign.config
    changed = sorted(k for k in set(before) | set(dumped) if before.get(k) != dumped.get(k))
    campaign.config = dumped
    campaign.config_version += 1
    service.add_version(session, campaign)
    was, now = {k: before.get(k) for k in changed}, {k: dumped.get(k) for k in changed}
    if action is not None:
        service.record_change(
            session, principal, campaign, action, version=campaign.config_version,
            before=was, after=now,
        )  # fmt: skip
    return was, now


def add_stock(session: Session, principal: Principal, campaign_id: str, units: int) -> Campaign:
    campaign = _load(session, principal, campaign_id)
    if campaign.status == "ended":
        raise Conflict("the campaign has ended", code="campaign_ended")
    stock = campaign.config.get("stock")
    if stock is None:
        raise Conflict(
            "this campaign has no stock limit; set config.stock to limit it",
            code="stock_unlimited",
        )
    if not 1 <= units <= MAX_STOCK or stock + units > MAX_STOCK:
        raise Invalid(f"units must be 1–{MAX_STOCK - stock}", code="invalid_units",
                      details={"field": "units"})  # fmt: skip
    _new_config(
        session, principal, campaign, {**campaign.config, "stock": stock + units}, "add_stock"
    )
    campaign.updated_at = utcnow()
    session.flush()
    return campaign


def edit(
    session: Session,
    principal: Principal,
    campaign_id: str,
    *,
    status: str | None = None,
    name: str | None = None,
    share_text: str | None = None,
    config: dict[str, Any] | None = None,
) -> Campaign:
    """PATCH: copy and rules (a new config version) and, for compatibility, a status."""
    campaign = _load(session, principal, campaign_id)
    if campaign.status == "ended" and (
        config is not None or name is not None or share_text is not None
    ):
        raise Conflict("an ended campaign cannot be edited; duplicate it", code="campaign_ended")
    if config is not None and campaign.status in _LIVE:
        principal.require_step_up("changing a live campaign's rules or rewards")
    copy_before = {"name": campaign.name, "share_text": campaign.share_text}
    version_before = campaign.config_version
    if name is not None:
        campaign.name = name
    if share_text is not None:
        campaign.share_text = share_text
    before: dict[str, Any] = {}
    after: dict[str, Any] = {}
    if config is not None:
        before, after = _new_config(session, principal, campaign, config, None)
    copy_after = {"name": campaign.name, "share_text": campaign.share_text}
    for key in copy_after:
        if copy_after[key] != copy_before[key]:
            before[key], after[key] = copy_before[key], copy_after[key]
    if after:  # one log row per edit: rules and copy together
        service.record_change(
            session, principal, campaign, "edit", before=before, after=after,
            version=campaign.config_version if campaign.config_version != version_before else None,
        )  # fmt: skip
    if campaign.status in _LIVE and (config is not None or copy_after != copy_before):
        service.require_clean_copy(
            service.lint(campaign.name, campaign.share_text, service.config_of(campaign))
        )
    campaign.updated_at = utcnow()
    session.flush()
    if status is not None and status != campaign.status:
        action = {"active": "launch" if campaign.status == "draft" else "resume",
                  "paused": "pause", "ended": "end"}.get(status, status)  # fmt: skip
        if action == "end":
            return end(session, principal, campaign_id)
        if action == "launch":
            return launch(session, principal, campaign_id)
        return _move(session, principal, campaign, status, action)
    return campaign


def duplicate(
    session: Session, principal: Principal, campaign_id: str, *, name: str | None = None
) -> Campaign:
    """A new draft with the same type, rules and copy (counters and people start empty)."""
    source = _load(session, principal, campaign_id)
    now = utcnow()
    config = service.config_of(source)
    copy = Campaign(
        id=new_id("cmp"), workspace_id=source.workspace_id, type=source.type,
        name=name or f"{source.name[:190]} 副本", status="draft", config=source.config,
        template=source.template, share_text=source.share_text, config_version=1,
        poster=source.poster,
        stock_used=0, budget_used=0, starts_at=now,
        ends_at=now + timedelta(days=config.duration_days), created_at=now, updated_at=now,
    )  # fmt: skip
    session.add(copy)
    session.flush()
    service.add_version(session, copy)
    service.record_change(
        session, principal, copy, "duplicate", after={"from": source.id}, version=1
    )
    session.flush()
    return copy


def changes(
    session: Session, workspace_id: str, campaign_id: str, *, cursor: str | None, limit: int
) -> list[CampaignChange]:
    campaign = service.get(session, workspace_id, campaign_id)
    stmt = select(CampaignChange).where(CampaignChange.campaign_id == campaign.id)
    return list(session.scalars(paginate(stmt, CampaignChange.id, cursor, limit)))
