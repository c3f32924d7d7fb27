"""Used once under real concurrency (threads, separate connections; PostgreSQL and SQLite): an
invitation link accepted by two people at the same moment, and one TOTP code sent twice."""

from __future__ import annotations

import json
import threading
from typing import Any

import pyotp

from liebian.kit.auth import Role
from liebian.kit.clock import utcnow
from liebian.kit.db import session_scope
from liebian.kit.errors import DomainError
from liebian.team import service, totp
from liebian.team.models import Account
from liebian.workspaces.service import create_workspace


def _race(n: int, work: Any) -> list[str]:
    barrier = threading.Barrier(n)
    outcomes: list[str] = []

    def run(i: int) -> None:
        barrier.wait()
        try:
            work(i)
            outcomes.append("ok")
        except DomainError as exc:
            outcomes.append(exc.code)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sorted(outcomes)


def test_invitation_and_totp_code_are_used_once(runtime: Any) -> None:
    with session_scope(runtime.sessions) as session:
        ws = create_workspace(session, "团队").id
        _inv, token = service.owner_invitation(session, ws)

    def accept(i: int) -> None:
        with session_scope(runtime.sessions) as session:
            service.accept_invitation(
                session, runtime.cipher, token, f"p{i}@example.com", "Lantern-42-river"
            )

    outcomes = _race(3, accept)
    assert outcomes.count("ok") == 1, outcomes
    assert set(outcomes) - {"ok"} <= {"invitation_used", "account_exists"}
    with session_scope(runtime.sessions) as session:
        members = service.list_members(session, ws)
        assert [m.role for m in members] == [Role.owner.value]
        account = session.get(Account, members[0].account_id)
        assert account is not None
        secret, _uri = totp.enroll(session, runtime.cipher, account, "p")
        code = pyotp.TOTP(secret).now()
        totp.confirm(session, runtime.cipher, account, code, utcnow())
        account_id = account.id
    nxt = pyotp.TOTP(secret).at(utcnow().timestamp() + 30)

    def verify(_i: int) -> None:
        with session_scope(runtime.sessions) as session:
            acc = session.get(Account, account_id)
            assert acc is not None
            totp.verify(session, runtime.cipher, acc, nxt, utcnow())

    outcomes = _race(4, verify)
    assert outcomes == ["ok", "totp_replayed", "totp_replayed", "totp_replayed"], outcomes


def test_audit_retention_purges_only_what_is_older_than_the_period(runtime: Any) -> None:
    from datetime import timedelta

    from sqlalchemy import func, select

    from liebian.kit.ids import new_id
    from liebian.team.audit import purge_expired
    from liebian.team.models import AuditEntry, SecurityPolicy

    now = utcnow()
    with session_scope(runtime.sessions) as session:
        short = create_workspace(session, "短").id
        default = create_workspace(session, "默认").id
        session.add(SecurityPolicy(workspace_id=short, require_totp=False, audit_retention_days=30))
        for ws in (short, default):
            for age in (10, 60, 400):
                session.add(
                    AuditEntry(
                        id=new_id("aud"),
                        workspace_id=ws,
                        at=now - timedelta(days=age),
                        actor_type="cli",
                        action="x",
                        outcome="ok",
                        status=200,
                    )
                )
    with session_scope(runtime.sessions) as session:
        assert purge_expired(session, now) == 3  # short: 60 and 400 days; default: 400
        rows = session.execute(
            select(AuditEntry.workspace_id, func.count())
            .where(AuditEntry.action == "x")
            .group_by(AuditEntry.workspace_id)
        ).all()
        left = {ws: n for ws, n in rows}
        # The purge records itself, once per workspace it removed from.
        purges = session.execute(
            select(AuditEntry.workspace_id, AuditEntry.changes).where(
                AuditEntry.action == "system.audit_retention"
            )
        ).all()
    assert left == {short: 1, default: 2}
    assert sorted((ws, json.loads(c)["removed"]) for ws, c in purges) == sorted(
        [(short, 2), (default, 1)]
    )
