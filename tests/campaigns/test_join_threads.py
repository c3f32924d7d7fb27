"""Joins and helps from many threads straight through the services, each in its own session
(the way worker threads run them): the seat and help invariants hold, and no thread sees
"database is locked" on SQLite — the in-process writer queue makes them take turns."""

from __future__ import annotations

from typing import Any

from fission_helpers import BARGAIN, GROUP_BUY, hammer
from sqlalchemy import func, select

from liebian.campaigns import assists, groups, service
from liebian.campaigns.models import AssistHelp, GroupMember
from liebian.kit.auth import Principal, Role
from liebian.kit.db import session_scope
from liebian.kit.errors import Conflict
from liebian.workspaces.service import bootstrap


def _campaign(runtime: Any, type_: str, config: dict[str, Any]) -> tuple[str, str]:
    with session_scope(runtime.sessions) as session:
        ws, _key = bootstrap(session, "并发")
        owner = Principal(workspace_id=ws.id, role=Role.owner)
        campaign = service.create(session, owner, campaign_type=type_, name="并发", config=config)
        return ws.id, campaign.id


def _outcome(call: Any) -> str:
    try:
        call()
    except Conflict as exc:
        return exc.code
    return "ok"


def test_forty_threads_one_group_of_five(runtime: Any) -> None:
    ws, cid = _campaign(runtime, "group_buy", GROUP_BUY)
    with session_scope(runtime.sessions) as session:
        gid = groups.open_group(session, runtime.cipher, ws, cid, "leader").id

    def join(i: int) -> str:
        def run() -> None:
            with session_scope(runtime.sessions) as session:
                groups.join_group(session, runtime.cipher, ws, gid, f"u{i}")

        return _outcome(run)

    # Any other exception (OperationalError "database is locked" included) fails the test.
    results = hammer(40, join)
    assert results.count("ok") == 4, results
    assert set(results) <= {"ok", "group_full", "group_success"}
    with session_scope(runtime.sessions) as session:
        group = groups.get_group(session, ws, gid)
        seats = session.scalars(select(GroupMember.seat).where(GroupMember.group_id == gid)).all()
        assert group.member_count == 5 and group.status == "success"
        assert sorted(seats) == [0, 1, 2, 3, 4]


def test_threads_help_one_bargain(runtime: Any) -> None:
    ws, cid = _campaign(runtime, "assist", BARGAIN)
    with session_scope(runtime.sessions) as session:
        aid = assists.start(session, runtime.cipher, ws, cid, "owner").id

    def help_(i: int) -> str:
        # Every third thread repeats a helper, one thread is the owner.
        who = "owner" if i == 0 else f"h{i // 3}"

        def run() -> None:
            with session_scope(runtime.sessions) as session:
                assists.help_assist(session, runtime.cipher, ws, aid, who)

        return _outcome(run)

    results = hammer(30, help_)
    assert results.count("ok") == 5, results
    assert set(results) <= {"ok", "self_help", "already_helped", "assist_complete"}
    with session_scope(runtime.sessions) as session:
        assist = assists.get_assist(session, ws, aid)
        helpers = session.scalars(
            select(AssistHelp.helper_contact_id).where(AssistHelp.assist_id == aid)
        ).all()
        total_cut = session.scalar(
            select(func.sum(AssistHelp.cut)).where(AssistHelp.assist_id == aid)
        )
        assert len(helpers) == len(set(helpers)) == 5
        assert assist.owner_contact_id not in helpers
        assert assist.helpers_count == 5 and assist.status == "unlocked"
        assert assist.price_now == 100 and total_cut == 10_000 - 100
