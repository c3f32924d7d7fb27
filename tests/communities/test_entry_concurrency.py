"""Places under real concurrency: threads scanning at once on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from datetime import date

import pytest
from sqlalchemy import func, select

from liebian.communities import entry, service
from liebian.communities.models import Community, CommunityAlert, CommunityGroup, CommunityMember
from liebian.communities.schemas import CommunityCreate, GroupCreate
from liebian.kit.auth import Principal, Role
from liebian.kit.db import session_scope
from liebian.kit.errors import DomainError
from liebian.workspaces.service import create_workspace


def _setup(runtime, capacity: int, groups: int, alert_below: int) -> tuple[str, list[str]]:  # type: ignore[no-untyped-def]
    with session_scope(runtime.sessions) as session:
        ws = create_workspace(session, "社群并发").id
        me = Principal(ws, Role.operator)
        community = service.create(
            session, me, CommunityCreate(name="福利群", kind="welfare", alert_below=alert_below)
        )
        ids = [
            service.create_group(session, me, community.id, GroupCreate(name=f"福利{i}群", capacity=capacity)).id
            for i in range(groups)
        ]  # fmt: skip
        return community.id, ids


def _scan(
    runtime,
    community_id: str,
    holder: str,
    out: list[str],
    barrier: threading.Barrier,
    lean: bool,
) -> None:  # type: ignore[no-untyped-def]
    barrier.wait()
    for _attempt in range(20):  # PostgreSQL may refuse a transaction under contention: retry
        try:
            with session_scope(runtime.sessions) as session:
                who = service.Entrant(holder, None, None, holder[2:], None)
                if lean:  # the entry page's hot path (falls back to service.enter)
                    placed = entry.decide(
                        session, runtime.cipher, community_id, who, {}, None, date(2026, 12, 2)
                    )
                    out.append(placed.group_id)
                    return
                community = session.get(Community, community_id)
                routed = service.enter(
                    session, runtime.cipher, community, who, {}, None, date(2026, 12, 2)
                )
                out.append(routed.group.id)
            return
        except DomainError as exc:
            out.append(exc.code)
            return


def _run(runtime, community_id: str, holders: list[str], lean: bool) -> list[str]:  # type: ignore[no-untyped-def]
    out: list[str] = []
    barrier = threading.Barrier(len(holders))
    threads = [
        threading.Thread(target=_scan, args=(runtime, community_id, h, out, barrier, lean))
        for h in holders
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


@pytest.mark.parametrize("lean", [False, True], ids=["orm", "lean"])
def test_concurrent_scans_never_overfill_and_alert_once(runtime, lean: bool) -> None:  # type: ignore[no-untyped-def]
    community_id, groups = _setup(runtime, capacity=4, groups=2, alert_below=3)
    results = _run(runtime, community_id, [f"v:visitor{i:03d}" for i in range(16)], lean)
    assert len(results) == 16
    assert sorted(r for r in results if r.startswith("cgp_")) == sorted(groups * 4)
    assert results.count("no_places") == 8
    with session_scope(runtime.read_sessions) as session:
        rows = session.execute(select(CommunityGroup.members, CommunityGroup.status)).all()
        assert sorted(rows) == [(4, "full"), (4, "full")]
        assert session.scalar(select(func.count()).select_from(CommunityMember)) == 8
        # One crossing (below 3 places left), one alert, though many scans crossed at once.
        assert session.scalar(select(func.count()).select_from(CommunityAlert)) == 1


@pytest.mark.parametrize("lean", [False, True], ids=["orm", "lean"])
def test_racing_rescans_of_one_phone_take_one_place(runtime, lean: bool) -> None:  # type: ignore[no-untyped-def]
    community_id, groups = _setup(runtime, capacity=50, groups=1, alert_below=0)
    results = _run(runtime, community_id, ["v:samephone"] * 8, lean)
    assert results == groups * 8
    with session_scope(runtime.read_sessions) as session:
        assert session.scalar(select(CommunityGroup.members)) == 1
        assert session.scalar(select(func.count()).select_from(CommunityMember)) == 1


def test_the_hourly_job_offers_a_grown_child_the_next_tier_once(runtime) -> None:  # type: ignore[no-untyped-def]
    from liebian.channels.models import StaffTask
    from liebian.communities.tasks import offer_due_moves
    from liebian.kit.clock import utcnow

    with session_scope(runtime.sessions) as session:
        ws = create_workspace(session, "分层").id
        me = Principal(ws, Role.operator)
        community = service.create(session, me, CommunityCreate.model_validate({
            "name": "宝妈群", "threshold": "screening",
            "tiers": [
                {"key": "t03", "name": "0–3 岁", "age": {"question": "b", "min_months": 0, "max_months": 36}},
                {"key": "t38", "name": "3–8 岁", "age": {"question": "b", "min_months": 36, "max_months": 96}},
            ],
            "screening": [{"key": "b", "label": "宝宝生日", "type": "date"}],
        }))  # fmt: skip
        for tier in ("t03", "t38"):
            service.create_group(
                session, me, community.id, GroupCreate(name=tier, tier=tier, owner="zhangsan")
            )
        community_id = community.id
    today = utcnow().date()
    born = (
        today.replace(year=today.year - 3)
        if not (today.month == 2 and today.day == 29)
        else today.replace(year=today.year - 3, day=28)
    )
    with session_scope(runtime.sessions) as session:
        community = session.get(Community, community_id)
        who = service.Entrant("v:grownup", None, None, "grownup", None)
        # Routed a year ago: then the child was 2, in the 0–3 group.
        routed = service.enter(session, runtime.cipher, community, who, {"b": born.isoformat()}, None,
                               today.replace(year=today.year - 1, day=min(today.day, 28)))  # fmt: skip
        assert routed.member.tier == "t03"
    assert offer_due_moves(runtime) == 1
    assert offer_due_moves(runtime) == 1  # the same offer again, not a second task
    with session_scope(runtime.read_sessions) as session:
        tasks = session.scalars(
            select(StaffTask).where(StaffTask.kind == "community_tier_move")
        ).all()
        assert len(tasks) == 1 and "3–8 岁" in tasks[0].title and tasks[0].assignee == "zhangsan"
