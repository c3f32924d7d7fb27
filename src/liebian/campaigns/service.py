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
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from liebian.campaigns import repository
from liebian.campaigns.lint import LintWarning, lint_fields
from liebian.campaigns.models import Campaign, CampaignChange, CampaignVersion
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


def _loc(loc: tuple[int | str, ...]) -> tuple[int | str, ...]:
    # The discriminated union puts the campaign type first ("invite.tiers"): the operator's
    # field is "tiers".
    return loc[1:] if loc and loc[0] in CAMPAIGN_TYPES else loc


def validation_to_invalid(exc: ValidationError, prefix: str = "config") -> Invalid:
    details = [
        {
            "field": ".".join([prefix, *[str(p) for p in _loc(err.get("loc", ()))]]),
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


def terms(session: Session, campaign: Campaign, version: int | None) -> CampaignConfig:
    """The config a participant who joined under ``version`` is paid by (rules changed since
    then apply to people who join later; nobody's reward is cut retroactively)."""
    if version is None or version == campaign.config_version:
        return config_of(campaign)
    stored = session.scalars(
        select(CampaignVersion.config).where(
            CampaignVersion.campaign_id == campaign.id, CampaignVersion.version == version
        )
    ).first()
    # A campaign created before versions existed has no row: its one config is version 1.
    return config_of(campaign) if stored is None else parse_config(campaign.type, stored)


def lint(name: str, share_text: str, config: CampaignConfig) -> list[LintWarning]:
    fields = [("name", name), ("share_text", share_text)]
    for key in ("headline", "body"):
        value = getattr(config, key, None)
        if isinstance(value, str):
            fields.append((f"config.{key}", value))
    return lint_fields(fields)


def require_clean_copy(findings: list[LintWarning]) -> None:
    """Copy lint errors block going live (a warning does not): 422 naming each finding."""
    errors = [w for w in findings if w.severity == "error"]
    if errors:
        first = errors[0]
        raise Invalid(
            f"{first.field or 'copy'}: 「{first.matched}」{first.message}；建议：{first.suggestion}",
            code="copy_lint_error",
            details=[
                {"field": w.field, "code": w.code, "matched": w.matched, "message": w.message,
                 "suggestion": w.suggestion}
                for w in errors
            ],
        )  # fmt: skip


def record_change(
    session: Session,
    principal: Principal | None,
    campaign: Campaign,
    action: str,
    *,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    version: int | None = None,
) -> CampaignChange:
    change = CampaignChange(
        id=new_id("cch"),
        workspace_id=campaign.workspace_id,
        campaign_id=campaign.id,
        action=action,
        config_version=version,
        before=before or {},
        after=after or {},
        actor=(principal.member_id or principal.key_id) if principal else None,
        created_at=utcnow(),
    )
    session.add(change)
    return change


def add_version(session: Session, campaign: Campaign) -> None:
    session.add(
        CampaignVersion(
            id=new_id("cvr"), workspace_id=campaign.workspace_id, campaign_id=campaign.id,
            version=campaign.config_version, config=campaign.config, created_at=utcnow(),
        )
    )  # fmt: skip


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
    if status == "active":
        require_clean_copy(lint(name, share_text, config))
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
        config_version=1,
        stock_used=0,
        budget_used=0,
        starts_at=now,
        ends_at=now + timedelta(days=config.duration_days),
        created_at=now,
        updated_at=now,
    )
    session.add(campaign)
    session.flush()
    add_version(session, campaign)
    record_change(session, principal, campaign, "create", after={"status": status}, version=1)
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


def require_running(campaign: Campaign, now: datetime) -> None:
    if campaign.status == "ended":
        raise Conflict("campaign has ended", code="campaign_ended")
    if campaign.status != "active":
        raise Conflict(
            f"campaign is {campaign.status}; participants can join only while it is active",
            code="campaign_not_active",
        )
    if campaign.ends_at is not None and campaign.ends_at <= now:
        raise Conflict("campaign has ended", code="campaign_ended")
    # Only a scheduled launch (a start later than the campaign's creation) holds people back.
    if campaign.starts_at > now and campaign.starts_at > campaign.created_at:
        raise Conflict("campaign has not started yet", code="campaign_not_started")


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
