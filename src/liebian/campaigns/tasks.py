"""Jobs of the fission domains, for the scheduler (or ``liebian`` CLI) to run periodically.

Each job is a plain function of (session, now) and safe to run concurrently or repeatedly:
every state change it makes is a conditional UPDATE, so two workers never double-apply.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from liebian.campaigns.assists import expire_assists
from liebian.campaigns.groups import expire_groups
from liebian.campaigns.models import Group, GroupMember
from liebian.campaigns.schedules import end_due, run_due
from liebian.kit.db import session_scope
from liebian.rewards.service import release_stock, settle


@dataclass(frozen=True, slots=True)
class FissionJobResult:
    groups_failed: int
    assists_expired: int
    rewards_issued: int
    campaigns_started: int = 0  # weekly schedules' copies gone live
    campaigns_ended: int = 0  # campaigns past their ends_at


def run_fission_jobs(sessions: sessionmaker[Session], now: datetime) -> FissionJobResult:
    """Expire groups (voiding orders), expire assists, settle due rewards, start weekly
    schedules' campaigns and end campaigns past their end; one transaction each so a failure
    in one does not roll back the others."""
    with session_scope(sessions) as session:
        failed = expire_groups(session, now)
        _release_seats(session, failed)
    with session_scope(sessions) as session:
        expired = expire_assists(session, now)
    with session_scope(sessions) as session:
        settled = settle(session, now)
    # Campaigns that start and end by themselves (campaigns/schedules.py, decision 0030).
    with session_scope(sessions) as session:
        started = run_due(session, now)
    with session_scope(sessions) as session:
        ended = end_due(session, now)
    return FissionJobResult(len(failed), expired, settled.issued, len(started), ended)


def _release_seats(session: Session, group_ids: list[str]) -> None:
    """A failed group's seats (one stock unit each, leader included) go back on sale: the
    orders were voided, so nothing was sold. Same transaction as the failure."""
    if not group_ids:
        return
    rows = session.execute(
        select(Group.campaign_id, func.count(GroupMember.id))
        .join(GroupMember, GroupMember.group_id == Group.id)
        .where(Group.id.in_(group_ids))
        .group_by(Group.campaign_id)
    ).all()
    for campaign_id, seats in rows:
        release_stock(session, campaign_id, units=int(seats))
