"""Campaigns that start and end by themselves (decision 0030).

- A one-off schedule is a launched campaign whose ``starts_at`` is later than now: it is
  ``active`` but every page and join refuses it with ``campaign_not_started`` until then, so it
  goes live without anybody acting. :func:`end_due` ends every campaign whose ``ends_at`` has
  passed (one conditional UPDATE each, logged as ``auto_end``), so a campaign ends by itself.
- A weekly rhythm (周三秒杀, 周五拼团) is a ``campaign_schedules`` row: every ``weekday`` at
  ``start_time`` in its time zone, :func:`run_due` copies the source campaign (rules, copy,
  poster) into a new live campaign for ``duration_minutes``. Each occurrence is one
  ``campaign_schedule_runs`` row unique on (schedule, local date), written in the same
  transaction as the copy: two schedulers, or a retry after a crash, start it once.

Times an operator types without a zone are read in the workspace's time zone.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from liebian.campaigns import design, service
from liebian.campaigns.models import Campaign, CampaignSchedule, CampaignScheduleRun
from liebian.kit.auth import Principal, Role
from liebian.kit.clock import utcnow
from liebian.kit.errors import Invalid, NotFound
from liebian.kit.ids import new_id
from liebian.workspaces.repository import get_workspace

WEEKDAYS_ZH = ("周一", "周二", "周三", "周四", "周五", "周六", "周日")
_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
MAX_DURATION_MINUTES = 7 * 24 * 60
MAX_SCHEDULES_PER_CAMPAIGN = 20


def workspace_zone(session: Session, workspace_id: str, default: str = "Asia/Shanghai") -> str:
    workspace = get_workspace(session, workspace_id)
    return workspace.timezone if workspace is not None and workspace.timezone else default


def as_utc(value: datetime, zone: str) -> datetime:
    """A time from the operator: kept if it carries a zone, else read in ``zone``."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=ZoneInfo(zone))
    return value.astimezone(UTC)


def next_occurrence(weekday: int, start_time: str, zone: str, after: datetime) -> datetime:
    """The first ``weekday`` at ``start_time`` local, strictly after ``after`` (UTC)."""
    tz = ZoneInfo(zone)
    hh, mm = (int(p) for p in start_time.split(":"))
    local = after.astimezone(tz)
    day: date = local.date() + timedelta(days=(weekday - local.weekday()) % 7)
    for _ in range(3):
        candidate = datetime.combine(day, time(hh, mm), tzinfo=tz).astimezone(UTC)
        if candidate > after:
            return candidate
        day += timedelta(days=7)
    raise AssertionError("unreachable: a week later is always later")


def _check(weekday: int, start_time: str, duration_minutes: int, zone: str) -> None:
    problems = []
    if not 0 <= weekday <= 6:
        problems.append({"field": "weekday", "problem": "0 (Monday) … 6 (Sunday)"})
    if not _HHMM.match(start_time):
        problems.append({"field": "start_time", "problem": "HH:MM, 00:00–23:59"})
    if not 1 <= duration_minutes <= MAX_DURATION_MINUTES:
        problems.append({"field": "duration_minutes", "problem": "1 minute to 7 days"})
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        problems.append({"field": "timezone", "problem": "an IANA zone such as Asia/Shanghai"})
    if problems:
        first = problems[0]
        raise Invalid(
            f"schedule is not valid: {first['field']}: {first['problem']}",
            code="invalid_schedule",
            details=problems,
        )


def create(
    session: Session,
    principal: Principal,
    campaign_id: str,
    *,
    name: str,
    weekday: int,
    start_time: str,
    duration_minutes: int,
    timezone: str | None,
) -> CampaignSchedule:
    principal.require(Role.operator)
    source = service.get(session, principal.workspace_id, campaign_id)
    zone = timezone or workspace_zone(session, principal.workspace_id)
    _check(weekday, start_time, duration_minutes, zone)
    count = len(
        session.scalars(
            select(CampaignSchedule.id).where(CampaignSchedule.source_campaign_id == source.id)
        ).all()
    )
    if count >= MAX_SCHEDULES_PER_CAMPAIGN:
        raise Invalid(
            f"a campaign has at most {MAX_SCHEDULES_PER_CAMPAIGN} schedules",
            code="too_many_schedules",
        )
    # The copies go live unattended: their copy must already pass the lint.
    service.require_clean_copy(
        service.lint(source.name, source.share_text, service.config_of(source))
        + design.lint_design(source, design.design_of(source))
    )
    now = utcnow()
    schedule = CampaignSchedule(
        id=new_id("csc"), workspace_id=source.workspace_id, source_campaign_id=source.id,
        name=name, weekday=weekday, start_time=start_time, duration_minutes=duration_minutes,
        timezone=zone, enabled=True,
        next_run_at=next_occurrence(weekday, start_time, zone, now),
        created_at=now, updated_at=now,
    )  # fmt: skip
    session.add(schedule)
    service.record_change(
        session, principal, source, "schedule",
        after={"schedule_id": schedule.id, "rhythm": describe(schedule)},
    )  # fmt: skip
    session.flush()
    return schedule


def describe(schedule: CampaignSchedule) -> str:
    hours, minutes = divmod(schedule.duration_minutes, 60)
    length = f"{hours} 小时" + (f" {minutes} 分" if minutes else "") if hours else f"{minutes} 分钟"
    return f"每{WEEKDAYS_ZH[schedule.weekday]} {schedule.start_time} 开始，持续 {length}"


def get(session: Session, workspace_id: str, schedule_id: str) -> CampaignSchedule:
    schedule = session.get(CampaignSchedule, schedule_id)
    if schedule is None or schedule.workspace_id != workspace_id:
        raise NotFound(f"no schedule {schedule_id!r}", code="schedule_not_found")
    return schedule


def list_for(
    session: Session, workspace_id: str, campaign_id: str | None = None
) -> list[CampaignSchedule]:
    stmt = select(CampaignSchedule).where(CampaignSchedule.workspace_id == workspace_id)
    if campaign_id is not None:
        stmt = stmt.where(CampaignSchedule.source_campaign_id == campaign_id)
    return list(session.scalars(stmt.order_by(CampaignSchedule.weekday, CampaignSchedule.id)))


def runs_of(session: Session, schedule_id: str, limit: int = 10) -> list[CampaignScheduleRun]:
    return list(
        session.scalars(
            select(CampaignScheduleRun)
            .where(CampaignScheduleRun.schedule_id == schedule_id)
            .order_by(CampaignScheduleRun.occurrence.desc())
            .limit(limit)
        )
    )


def set_enabled(
    session: Session, principal: Principal, schedule_id: str, enabled: bool
) -> CampaignSchedule:
    principal.require(Role.operator)
    schedule = get(session, principal.workspace_id, schedule_id)
    now = utcnow()
    if enabled and not schedule.enabled:
        # Re-enabled: from the next occurrence, never the ones missed while it was off.
        schedule.next_run_at = next_occurrence(
            schedule.weekday, schedule.start_time, schedule.timezone, now
        )
    schedule.enabled = enabled
    schedule.updated_at = now
    session.flush()
    return schedule


def delete(session: Session, principal: Principal, schedule_id: str) -> None:
    principal.require(Role.operator)
    schedule = get(session, principal.workspace_id, schedule_id)
    session.delete(schedule)
    session.flush()


# ── the jobs (run by the scheduler's fission job and `liebian jobs run`) ───────────────────


def end_due(session: Session, now: datetime) -> int:
    """End every live campaign whose end has passed. A conditional UPDATE per campaign, so a
    second runner (or an operator's click) at the same moment cannot log it twice."""
    due = session.scalars(
        select(Campaign.id).where(
            Campaign.status.in_(("active", "paused")),
            Campaign.ends_at.is_not(None),
            Campaign.ends_at <= now,
        )
    ).all()
    ended = 0
    for campaign_id in due:
        moved = session.execute(
            update(Campaign)
            .where(Campaign.id == campaign_id, Campaign.status.in_(("active", "paused")))
            .values(status="ended", updated_at=now)
            .execution_options(synchronize_session=False)
        )
        if getattr(moved, "rowcount", 0) == 1:
            campaign = session.get(Campaign, campaign_id)
            assert campaign is not None
            session.refresh(campaign)
            service.record_change(
                session, None, campaign, "auto_end",
                after={"status": "ended", "ends_at": campaign.ends_at.isoformat() if campaign.ends_at else None},
            )  # fmt: skip
            ended += 1
    session.flush()
    return ended


def run_due(session: Session, now: datetime) -> list[str]:
    """Start this week's copy of every due schedule; the ids of the campaigns started."""
    due = session.scalars(
        select(CampaignSchedule)
        .where(CampaignSchedule.enabled.is_(True), CampaignSchedule.next_run_at <= now)
        .order_by(CampaignSchedule.next_run_at)
        .limit(100)
    ).all()
    started: list[str] = []
    for schedule in due:
        campaign_id = _start_occurrence(session, schedule, now)
        if campaign_id is not None:
            started.append(campaign_id)
    return started


def _start_occurrence(session: Session, schedule: CampaignSchedule, now: datetime) -> str | None:
    start = schedule.next_run_at
    end = start + timedelta(minutes=schedule.duration_minutes)
    occurrence = start.astimezone(ZoneInfo(schedule.timezone)).date().isoformat()
    following = next_occurrence(schedule.weekday, schedule.start_time, schedule.timezone, now)
    # Move the schedule on first (conditionally: another runner may have done it).
    moved = session.execute(
        update(CampaignSchedule)
        .where(CampaignSchedule.id == schedule.id, CampaignSchedule.next_run_at == start)
        .values(next_run_at=following, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    if getattr(moved, "rowcount", 0) != 1 or end <= now:
        return None  # another runner has it, or the whole occurrence was missed (server down)
    source = session.get(Campaign, schedule.source_campaign_id)
    if source is None:
        return None
    try:
        with session.begin_nested():
            copy = _copy_live(session, source, schedule, start, end, now)
            session.add(
                CampaignScheduleRun(
                    id=new_id("csr"),
                    workspace_id=schedule.workspace_id,
                    schedule_id=schedule.id,
                    occurrence=occurrence,
                    campaign_id=copy.id,
                    created_at=now,
                )
            )
            session.flush()
    except IntegrityError:
        return None  # this occurrence was started already
    return copy.id


def _copy_live(
    session: Session,
    source: Campaign,
    schedule: CampaignSchedule,
    start: datetime,
    end: datetime,
    now: datetime,
) -> Campaign:
    local = start.astimezone(ZoneInfo(schedule.timezone))
    copy = Campaign(
        id=new_id("cmp"), workspace_id=source.workspace_id, type=source.type,
        name=f"{schedule.name} {local:%m-%d}"[:200], status="active", config=source.config,
        template=source.template, share_text=source.share_text, config_version=1,
        poster=source.poster, stock_used=0, budget_used=0, starts_at=start, ends_at=end,
        created_at=now, updated_at=now,
    )  # fmt: skip
    session.add(copy)
    session.flush()
    service.add_version(session, copy)
    after: dict[str, Any] = {
        "from": source.id, "schedule_id": schedule.id, "starts_at": start.isoformat(),
        "ends_at": end.isoformat(),
    }  # fmt: skip
    service.record_change(session, None, copy, "scheduled", after=after, version=1)
    return copy
