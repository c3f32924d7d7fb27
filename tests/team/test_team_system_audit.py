"""Writes outside a request (decision 0028), on SQLite and PostgreSQL: what the scheduler's
fission job decides on its own (a group past its deadline fails and its orders are voided) is
recorded once, as ``system`` / ``system.fission``, in the workspace it changed, and a run
that changes nothing records nothing; the retention purge records itself; the CLI's
``jobs run`` records the same work as ``cli``."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from liebian.kit.clock import utcnow
from liebian.kit.db import session_scope
from liebian.team.models import AuditEntry

GROUP_BUY = {"product_name": "Python入门课", "original_price": 49_900,
             "tiers": [{"size": 5, "price": 19_900}], "time_limit_hours": 24}  # fmt: skip


def _expired_group(client: Any, owner: dict[str, str], runtime: Any) -> tuple[str, str]:
    from liebian.campaigns import groups

    created = client.post(
        "/api/v1/campaigns",
        json={"type": "group_buy", "name": "拼团", "config": GROUP_BUY},
        headers=owner,
    )
    assert created.status_code == 201, created.text
    ws = client.get("/api/v1/workspace", headers=owner).json()["id"]
    past = utcnow() - timedelta(hours=30)
    with session_scope(runtime.sessions) as session:
        group = groups.open_group(
            session, runtime.cipher, ws, created.json()["id"], "lead", now=past
        )
        groups.join_group(session, runtime.cipher, ws, group.id, "early", now=past)
        return ws, group.id


def test_scheduled_jobs_are_audited_as_system_once(
    client: Any, owner: dict[str, str], runtime: Any
) -> None:
    from liebian.app.scheduler import jobs_for

    _ws, gid = _expired_group(client, owner, runtime)
    fission = next(j for j in jobs_for(runtime) if j.name == "fission")
    assert fission.run().groups_failed == 1
    rows = client.get("/api/v1/audit?action=system.fission", headers=owner).json()["items"]
    assert len(rows) == 1, rows
    row = rows[0]
    assert row["actor_type"] == "system" and row["member_id"] is None and row["key_id"] is None
    changes = row["changes"]
    voided = [
        v for k, v in changes.items() if k.startswith("campaign_group_members:")
        and v["fields"].get("order_status", [None, None])[1] == "voided"
    ]  # fmt: skip
    assert len(voided) == 2, changes
    # Nothing due any more: a run that changes nothing records nothing.
    assert fission.run().groups_failed == 0
    assert (
        len(client.get("/api/v1/audit?action=system.fission", headers=owner).json()["items"]) == 1
    )
    # The join through the API is the key's, not the system's.
    assert client.get(f"/api/v1/groups/{gid}", headers=owner).json()["status"] == "failed"


def test_the_retention_purge_records_itself(
    client: Any, owner: dict[str, str], runtime: Any
) -> None:
    from liebian.app.scheduler import jobs_for
    from liebian.kit.ids import new_id

    ws = client.get("/api/v1/workspace", headers=owner).json()["id"]
    with session_scope(runtime.sessions) as session:
        for days in (400, 500):
            session.add(
                AuditEntry(
                    id=new_id("aud"), workspace_id=ws, at=utcnow() - timedelta(days=days),
                    actor_type="key", action="old", changes="{}", outcome="ok", status=200,
                )
            )  # fmt: skip
    purge = next(j for j in jobs_for(runtime) if j.name == "audit_retention")
    assert purge.run() == 2
    rows = client.get("/api/v1/audit?action=system.audit_retention", headers=owner).json()["items"]
    assert len(rows) == 1 and rows[0]["actor_type"] == "system"
    assert "old" not in {
        r["action"] for r in client.get("/api/v1/audit", headers=owner).json()["items"]
    }
    assert purge.run() == 0
    assert (
        len(
            client.get("/api/v1/audit?action=system.audit_retention", headers=owner).json()["items"]
        )
        == 1
    )


def test_cli_jobs_run_and_init_are_audited_as_cli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from liebian.app.runtime import Runtime
    from liebian.campaigns import groups
    from liebian.campaigns import service as campaigns
    from liebian.cli import app
    from liebian.kit.auth import Principal, Role
    from liebian.kit.settings import Settings
    from liebian.workspaces.models import Workspace

    monkeypatch.delenv("LIEBIAN_DATABASE_URL", raising=False)
    monkeypatch.setenv("LIEBIAN_SECRET_KEY", "22" * 32)
    data_dir = tmp_path / "data"
    runner = CliRunner()
    assert runner.invoke(app, ["init", "--data-dir", str(data_dir)]).exit_code == 0
    runtime = Runtime.build(Settings(data_dir=data_dir))
    try:
        with session_scope(runtime.sessions) as session:
            ws = session.scalars(select(Workspace.id)).one()
            campaign = campaigns.create(
                session, Principal(ws, Role.owner), campaign_type="group_buy", name="拼团",
                config={"product_name": "课", "original_price": 1_000,
                        "tiers": [{"size": 2, "price": 500}]},
            )  # fmt: skip
            groups.open_group(
                session, runtime.cipher, ws, campaign.id, "leader", now=utcnow() - timedelta(days=2)
            )
        assert (
            runner.invoke(
                app, ["jobs", "run", "--no-segments", "--no-webhooks", "--data-dir", str(data_dir)]
            ).exit_code
            == 0
        )
        assert (
            runner.invoke(
                app, ["jobs", "run", "--no-segments", "--no-webhooks", "--data-dir", str(data_dir)]
            ).exit_code
            == 0
        )
        with runtime.read_sessions() as session:
            rows = session.execute(
                select(AuditEntry.workspace_id, AuditEntry.actor_type, AuditEntry.action)
                .where(AuditEntry.actor_type == "cli")
                .order_by(AuditEntry.id)
            ).all()
    finally:
        runtime.close()
    # The group's set-based expiry names no workspace: the installation's record ("").
    assert sorted(tuple(r) for r in rows) == [
        ("", "cli", "cli.jobs_run"), (ws, "cli", "cli.init"), (ws, "cli", "cli.jobs_run"),
    ]  # fmt: skip
    listed = runner.invoke(app, ["audit", "list", "--data-dir", str(data_dir)])
    assert listed.exit_code == 0 and "cli.jobs_run" in listed.stdout
    assert "update campaign_groups: 1 rows" in listed.stdout
