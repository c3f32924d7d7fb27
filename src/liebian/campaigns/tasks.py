"""Jobs of the fission domains, for the scheduler (or ``liebian`` CLI) to run periodically.

Each job is a plain function of (session, now) and safe to run concurrently or repeatedly:
every state change it makes is a conditional UPDATE, so two workers never double-apply.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from liebian.campaigns.assists import expire_assists
from liebian.campaigns.groups import expire_groups
from liebian.kit.db import session_scope
from liebian.rewards.service import settle


@dataclass(frozen=True, slots=True)
class FissionJobResult:
    groups_failed: int
    assists_expired: int
    rewards_issued: int


def run_fission_jobs(sessions: sessionmaker[Session], now: datetime) -> FissionJobResult:
    """Expire groups (voiding orders), expire assists, settle due rewards; one transaction
    each so a failure in one does not roll back the others."""
    with session_scope(sessions) as session:
        failed = expire_groups(session, now)
    with session_scope(sessions) as session:
        expired = expire_assists(session, now)
    with session_scope(sessions) as session:
        settled = settle(session, now)
    return FissionJobResult(len(failed), expired, settled.issued)
