from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from liebian.cli import app


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("LIEBIAN_DATABASE_URL", raising=False)
    monkeypatch.setenv("LIEBIAN_SECRET_KEY", "22" * 32)
    return tmp_path / "data"


def test_init_prints_the_owner_key_alone_on_the_last_line(data_dir: Path) -> None:
    result = CliRunner().invoke(app, ["init", "--data-dir", str(data_dir)])
    assert result.exit_code == 0, result.output
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("lb_") and " " not in last
    assert (data_dir / "liebian.db").exists()
    keys = CliRunner().invoke(
        app, ["keys", "create", "--role", "viewer", "--data-dir", str(data_dir)]
    )
    assert keys.exit_code == 0 and keys.stdout.strip().splitlines()[-1].startswith("lb_")
    listed = CliRunner().invoke(app, ["keys", "list", "--data-dir", str(data_dir)])
    assert "owner" in listed.stdout and "viewer" in listed.stdout and last not in listed.stdout
    # The first console sign-in: a one-time owner link; the key creation above is audited.
    link = CliRunner().invoke(app, ["team", "owner-link", "--data-dir", str(data_dir)])
    assert link.exit_code == 0, link.output
    assert "/admin/join#inv_" in link.stdout.strip().splitlines()[-1]
    import sqlite3

    with sqlite3.connect(data_dir / "liebian.db") as db:
        actions = {
            row[0] for row in db.execute("SELECT actor_type || ':' || action FROM audit_log")
        }
    assert {"cli:cli.keys_create", "cli:cli.team_owner_link"} <= actions


def test_links_import_and_export(data_dir: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["init", "--data-dir", str(data_dir)]).exit_code == 0
    csv_path = tmp_path / "in.csv"
    csv_path.write_text(
        "url,slug,channel,tags\nhttps://a.cn/1,cli-one,群1,秋季|新客\nhttps://a.cn/2,,,\n",
        encoding="utf-8",
    )
    result = runner.invoke(app, ["links", "import", str(csv_path), "--data-dir", str(data_dir)])
    assert result.exit_code == 0, result.output
    assert "2 links created" in result.stdout
    bad = tmp_path / "bad.csv"
    bad.write_text("url\njavascript:alert(1)\n", encoding="utf-8")
    rejected = runner.invoke(app, ["links", "import", str(bad), "--data-dir", str(data_dir)])
    assert rejected.exit_code == 1 and "row 1" in rejected.stderr
    out = tmp_path / "out.csv"
    assert (
        runner.invoke(app, ["links", "export", str(out), "--data-dir", str(data_dir)]).exit_code
        == 0
    )
    text = out.read_text(encoding="utf-8-sig")
    assert "cli-one" in text and "新客|秋季" in text and text.count("\n") == 3
    # Both are in the audit log, once each, as the CLI's (the rejected import changed nothing),
    # beside the init that made the workspace.
    import sqlite3

    with sqlite3.connect(data_dir / "liebian.db") as db:
        rows = list(db.execute("SELECT action, outcome FROM audit_log WHERE actor_type = 'cli'"))
    assert sorted(rows) == [
        ("cli.init", "ok"),
        ("cli.links_export", "ok"),
        ("cli.links_import", "ok"),
    ]


def test_jobs_run_fails_expired_groups(data_dir: Path) -> None:
    from datetime import timedelta

    from liebian.app.runtime import Runtime
    from liebian.campaigns import groups
    from liebian.campaigns import service as campaigns
    from liebian.campaigns.models import Group
    from liebian.kit.auth import Principal, Role
    from liebian.kit.clock import utcnow
    from liebian.kit.db import session_scope
    from liebian.kit.settings import Settings
    from liebian.workspaces.models import Workspace

    runner = CliRunner()
    assert runner.invoke(app, ["init", "--data-dir", str(data_dir)]).exit_code == 0
    runtime = Runtime.build(Settings(data_dir=data_dir))
    try:
        with session_scope(runtime.sessions) as session:
            ws = session.query(Workspace).one().id
            campaign = campaigns.create(
                session, Principal(ws, Role.owner), campaign_type="group_buy", name="拼团",
                config={"product_name": "课", "original_price": 1_000,
                        "tiers": [{"size": 2, "price": 500}]},
            )  # fmt: skip
            group = groups.open_group(
                session, runtime.cipher, ws, campaign.id, "leader",
                now=utcnow() - timedelta(days=2),
            )  # fmt: skip
    finally:
        runtime.close()
    result = runner.invoke(app, ["jobs", "run", "--data-dir", str(data_dir)])
    assert result.exit_code == 0, result.output
    assert "groups failed: 1" in result.stdout
    assert "WeCom tag pushes: 0" in result.stdout
    assert "segments and rule tags rebuilt: 0" in result.stdout
    assert "contacts reconciled:" in result.stdout
    again = runner.invoke(app, ["jobs", "run", "--data-dir", str(data_dir)])
    assert "groups failed: 0" in again.stdout
    runtime = Runtime.build(Settings(data_dir=data_dir))
    try:
        with runtime.sessions() as session:
            assert session.get(Group, group.id).status == "failed"
    finally:
        runtime.close()
