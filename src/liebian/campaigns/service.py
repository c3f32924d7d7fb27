"""Campaign lifecycle: create (from a config or a template), read, change status.

Configs are validated by ``campaigns.schemas`` (amount bounds, the two-level distribution
limit, no entry fees) before anything is written; copy is linted for 诱导分享 wording and the
findings are returned as warnings rather than refusals, because the operator knows context
the lint does not.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy import update
from sqlalchemy.orm import Session

from liebian.campaigns import repository
from liebian.campaigns.lint import LintWarning, lint_fields
from liebian.campaigns.models import Campaign
from liebian.campaigns.schemas import CAMPAIGN_TYPES, CampaignConfig, parse_config
from liebian.campaigns.templates import build_config, get_template
from liebian.kit.auth import Principal, Role
from liebian.kit.clock import utcnow
from liebian.kit.errors import Conflict, Invalid, NotFound
from liebian.kit.ids import new_id

STATUSES = ("draft", "active", "paused", "ended")
# Which status may follow which: ended is final so nobody reopens a settled campaign.
_NEXT = {
    "draft": {"active", "ended"},
    "active": {"paused", "ended"},
    "paused": {"active", "ended"},
    "ended": set(),
}


def validation_to_invalid(exc: ValidationError, prefix: str = "config") -> Invalid:
    details = [
        {
            "field": ".".join([prefix, *[str(p) for p in err.get("loc", ())]]),
            "problem": err.get("msg", ""),
            "type": err.get("type"),
        }
        for err in exc.errors()
    ]
    first = details[0] if details else {"field": prefix, "problem": "invalid"}
    return Invalid(
        f"campaign config is not valid: {first['field']}: {first['problem']}",
        code="invalid_config",
        details=details,
    )


def parse(campaign_type: str, config: dict[str, Any]) -> CampaignConfig:
    if campaign_type not in CAMPAIGN_TYPES:
        raise Invalid(
            f"type must be one of {', '.join(CAMPAIGN_TYPES)}",
            code="invalid_type",
            details={"field": "type", "known": list(CAMPAIGN_TYPES)},
        )
    try:
        return parse_config(campaign_type, config)
    except ValidationError as exc:
        raise validation_to_invalid(exc) from exc


def config_of(campaign: Campaign) -> CampaignConfig:
    """The stored config as its typed model (stored configs were validated on write)."""
    return parse_config(campaign.type, campaign.config)


def lint(name: str, share_text: str, config: CampaignConfig) -> list[LintWarning]:
    fields = [("name", name), ("share_text", share_text)]
    for key in ("headline", "body"):
        value = getattr(config, key, None)
        if isinstance(value, str):
            fields.append((f"config.{key}", value))
    return lint_fields(fields)


def _insert(
    session: Session,
    principal: Principal,
    *,
    campaign_type: str,
    name: str,
    config: CampaignConfig,
    share_text: str,
    status: str,
    template: str | None,
) -> Campaign:
    if status not in ("draft", "active"):
        raise Invalid("a new campaign starts as 'draft' or 'active'", code="invalid_status")
    now = utcnow()
    campaign = Campaign(
        id=new_id("cmp"),
        workspace_id=principal.workspace_id,
        type=campaign_type,
        name=name,
        status=status,
        config=config.model_dump(mode="json"),
        template=template,
        share_text=share_text,
        stock_used=0,
        budget_used=0,
        starts_at=now,
        ends_at=now + timedelta(days=config.duration_days),
        created_at=now,
        updated_at=now,
    )
    session.add(campaign)
    session.flush()
    return campaign


def create(
    session: Session,
    principal: Principal,
    *,
    campaign_type: str,
    name: str,
    config: dict[str, Any],
    share_text: str = "",
    status: str = "active",
) -> Campaign:
    principal.require(Role.operator)
    parsed = parse(campaign_type, config)
    return _insert(
        session, principal, campaign_type=campaign_type, name=name, config=parsed,
        share_text=share_text, status=status, template=None,
    )  # fmt: skip


def create_from_template(
    session: Session,
    principal: Principal,
    *,
    template: str,
    name: str | None,
    overrides: dict[str, Any] | None,
    status: str = "active",
) -> Campaign:
    principal.require(Role.operator)
    tpl = get_template(template)  # unknown → 422 listing the known keys
    try:
        parsed = build_config(template, overrides or {})
    except ValidationError as exc:
        raise validation_to_invalid(exc, "overrides") from exc
    return _insert(
        session, principal, campaign_type=tpl.type, name=name or tpl.name, config=parsed,
        share_text=tpl.share_text, status=status, template=tpl.key,
    )  # fmt: skip


def get(session: Session, workspace_id: str, campaign_id: str) -> Campaign:
    campaign = repository.get(session, Campaign, workspace_id, campaign_id)
    if campaign is None:
        raise NotFound(f"no campaign {campaign_id!r} in this workspace", code="campaign_not_found")
    return campaign


def update_campaign(
    session: Session,
    principal: Principal,
    campaign_id: str,
    *,
    status: str | None = None,
    name: str | None = None,
    share_text: str | None = None,
) -> Campaign:
    principal.require(Role.operator)
    campaign = get(session, principal.workspace_id, campaign_id)
    if status is not None and status != campaign.status:
        if status not in STATUSES:
            raise Invalid(f"status must be one of {', '.join(STATUSES)}", code="invalid_status")
        if status not in _NEXT[campaign.status]:
            raise Conflict(
                f"a campaign that is {campaign.status} cannot become {status}",
                code="invalid_status_change",
                details={"from": campaign.status, "to": status},
            )
        campaign.status = status
    if name is not None:
        campaign.name = name
    if share_text is not None:
        campaign.share_text = share_text
    campaign.updated_at = utcnow()
    session.flush()
    return campaign


def require_running(campaign: Campaign, now: datetime) -> None:
    if campaign.status != "active":
        raise Conflict(
            f"campaign is {campaign.status}; participants can join only while it is active",
            code="campaign_not_active",
        )
    if campaign.ends_at is not None and campaign.ends_at <= now:
        raise Conflict("campaign has ended", code="campaign_ended")


def require_type(campaign: Campaign, *types: str) -> None:
    if campaign.type not in types:
        raise Conflict(
            f"this is a {campaign.type} campaign; the action needs {' or '.join(types)}",
            code="wrong_campaign_type",
        )


def take_stock(session: Session, campaign: Campaign, *, units: int = 1, amount: int = 0) -> bool:
    """Consume stock/budget with one conditional UPDATE: False when it would overspend."""
    config = campaign.config
    stock = config.get("stock")
    budget = config.get("budget")
    stmt = update(Campaign).where(Campaign.id == campaign.id)
    if stock is not None:
        stmt = stmt.where(Campaign.stock_used + units <= stock)
    if budget is not None:
        stmt = stmt.where(Campaign.budget_used + amount <= budget)
    result = session.execute(
        stmt.values(
            stock_used=Campaign.stock_used + units, budget_used=Campaign.budget_used + amount
        ).execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]
