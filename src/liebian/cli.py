"""The ``liebian`` command: init, serve, keys, db, and operator tools."""

from __future__ import annotations

import os
import sys
from typing import Annotated, Any

import typer
from sqlalchemy import Engine

from liebian.kit.auth import Role
from liebian.kit.settings import Settings
from liebian.links.cli import domains_app, links_app

app = typer.Typer(
    help="liebian (裂变): self-hosted private-domain growth engine", no_args_is_help=True
)
keys_app = typer.Typer(help="API keys", no_args_is_help=True)
db_app = typer.Typer(help="database schema", no_args_is_help=True)
jobs_app = typer.Typer(
    help="background jobs (for cron when the server's scheduler is off)", no_args_is_help=True
)
team_app = typer.Typer(help="team: console sign-in for people", no_args_is_help=True)
audit_app = typer.Typer(help="the audit log (who changed what)", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.add_typer(team_app, name="team")
app.add_typer(db_app, name="db")
app.add_typer(jobs_app, name="jobs")
app.add_typer(audit_app, name="audit")
app.add_typer(domains_app, name="domains")
app.add_typer(links_app, name="links")

DataDir = Annotated[str | None, typer.Option(help="data directory (env LIEBIAN_DATA_DIR)")]


def _settings(data_dir: str | None) -> Settings:
    if data_dir:
        os.environ["LIEBIAN_DATA_DIR"] = data_dir
    return Settings()


def _is_initialized(settings: Settings) -> bool:
    from sqlalchemy import inspect

    from liebian.kit.db import make_engine

    engine = make_engine(settings.resolved_database_url)
    try:
        return inspect(engine).has_table("workspaces") and _has_workspace(engine)
    finally:
        engine.dispose()


def _has_workspace(engine: Engine) -> bool:
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from liebian.workspaces.models import Workspace

    with Session(engine) as session:
        return session.scalars(select(Workspace.id).limit(1)).first() is not None


def _init(settings: Settings, name: str) -> str:
    from liebian.app.runtime import Runtime
    from liebian.kit.db import session_scope
    from liebian.migrations import upgrade
    from liebian.team.audit import cli_context, install
    from liebian.workspaces.service import bootstrap

    upgrade(settings.resolved_database_url)
    runtime = Runtime.build(settings)
    install(runtime.sessions)
    try:
        with session_scope(runtime.sessions) as session:
            audit = cli_context(session, "init")
            workspace, key = bootstrap(session, name)
            audit.workspace_id = workspace.id
            typer.echo(
                f"workspace {workspace.id} ({workspace.name}) created in {settings.data_dir}"
            )
            typer.echo("owner API key (shown once; keep it safe):")
    finally:
        runtime.close()
    return key


@app.command()
def init(
    data_dir: DataDir = None,
    name: Annotated[str, typer.Option(help="workspace name")] = "默认工作区",
) -> None:
    """Create or upgrade the database, then a workspace and an owner key (printed last)."""
    settings = _settings(data_dir)
    key = _init(settings, name)
    typer.echo(key)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="bind address")] = None,
    port: Annotated[int | None, typer.Option(help="port")] = None,
    data_dir: DataDir = None,
    base_url: Annotated[str | None, typer.Option(help="public base URL for short links")] = None,
) -> None:
    """Run everything in one process: API, redirects, event flusher and job scheduler."""
    settings = _settings(data_dir)
    host = host or settings.host
    port = port or settings.port
    os.environ["LIEBIAN_HOST"] = host
    os.environ["LIEBIAN_PORT"] = str(port)
    if base_url:
        os.environ["LIEBIAN_BASE_URL"] = base_url
    elif "LIEBIAN_BASE_URL" not in os.environ:
        os.environ["LIEBIAN_BASE_URL"] = f"http://{host}:{port}"
    if not _is_initialized(settings):
        key = _init(settings, "默认工作区")
        typer.echo(key)
    else:
        from liebian.migrations import upgrade

        upgrade(settings.resolved_database_url)
    typer.echo(f"liebian listening on http://{host}:{port}  (API docs: /docs)", err=True)
    sys.stdout.flush()
    sys.stderr.flush()
    # Replace this process with granian rather than starting it from here: the worker it forks
    # then inherits none of the memory that migrations and the CLI imports took (~100 MB).
    os.execv(
        sys.executable,
        [
            sys.executable, "-m", "granian", "--interface", "asgi", "--factory",
            "--host", host, "--port", str(port), "--workers", "1", "--no-ws", "--no-access-log",
            "--loop", SERVE_LOOP, "liebian.app.factory:create_app",
        ],
    )  # fmt: skip


def _serve_loop() -> str:
    """uvloop where it is installed (Linux/macOS; ~5% more redirects/s here), else asyncio."""
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


SERVE_LOOP = _serve_loop()


@keys_app.command("create")
def keys_create(
    role: Annotated[Role, typer.Option(help="owner|admin|operator|analyst|viewer")] = Role.operator,
    name: Annotated[str, typer.Option()] = "",
    workspace: Annotated[str | None, typer.Option(help="workspace id (default: the first)")] = None,
    data_dir: DataDir = None,
) -> None:
    """Create an API key; the key is printed alone on the last line."""
    from sqlalchemy import select

    from liebian.app.runtime import Runtime
    from liebian.kit.db import session_scope
    from liebian.team.audit import cli_context, install
    from liebian.workspaces.models import Workspace
    from liebian.workspaces.service import create_api_key

    runtime = Runtime.build(_settings(data_dir))
    install(runtime.sessions)
    with session_scope(runtime.sessions) as session:
        ws_id = workspace or session.scalars(select(Workspace.id).order_by(Workspace.id)).first()
        if ws_id is None:
            raise typer.BadParameter("no workspace yet: run `liebian init` first")
        cli_context(session, "keys_create", ws_id)
        key, plaintext = create_api_key(session, ws_id, role, name)
        typer.echo(f"{key.id} role={key.role} workspace={ws_id}")
    typer.echo(plaintext)


@keys_app.command("list")
def keys_list(data_dir: DataDir = None) -> None:
    from sqlalchemy import select

    from liebian.app.runtime import Runtime
    from liebian.workspaces.models import ApiKey

    runtime = Runtime.build(_settings(data_dir))
    with runtime.sessions() as session:
        for key in session.scalars(select(ApiKey).order_by(ApiKey.id)):
            state = "revoked" if key.revoked_at else "active"
            typer.echo(
                f"{key.id}\t{key.workspace_id}\t{key.role}\t{key.key_hint}…\t{state}\t{key.name}"
            )


@team_app.command("owner-link")
def team_owner_link(
    workspace: Annotated[str | None, typer.Option(help="workspace id (default: the first)")] = None,
    data_dir: DataDir = None,
) -> None:
    """A one-time link (valid 24 hours) to set up an owner's console sign-in: open it, choose
    your email or phone and a password. The link is printed alone on the last line."""
    from sqlalchemy import select

    from liebian.app.runtime import Runtime
    from liebian.kit.db import session_scope
    from liebian.team.audit import cli_context, install
    from liebian.team.service import owner_invitation
    from liebian.workspaces.models import Workspace

    settings = _settings(data_dir)
    runtime = Runtime.build(settings)
    install(runtime.sessions)
    try:
        with session_scope(runtime.sessions) as session:
            ws_id = (
                workspace or session.scalars(select(Workspace.id).order_by(Workspace.id)).first()
            )
            if ws_id is None:
                raise typer.BadParameter("no workspace yet: run `liebian init` first")
            cli_context(session, "team_owner_link", ws_id)
            _invitation, token = owner_invitation(session, ws_id)
    finally:
        runtime.close()
    typer.echo(f"owner sign-in setup for workspace {ws_id} (one use, 24 hours):")
    typer.echo(f"{settings.base_url.rstrip('/')}/admin/join#{token}")


@audit_app.command("list")
def audit_list(
    workspace: Annotated[
        str, typer.Option(help="workspace id; default: the installation's own records")
    ] = "",
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
    data_dir: DataDir = None,
) -> None:
    """The audit log, newest first. Without --workspace: the records of set-based changes by
    jobs and commands that name no workspace (decision 0028)."""
    from sqlalchemy import select

    from liebian.app.runtime import Runtime
    from liebian.team.models import AuditEntry

    runtime = Runtime.build(_settings(data_dir))
    try:
        with runtime.read_sessions() as session:
            rows = session.scalars(
                select(AuditEntry)
                .where(AuditEntry.workspace_id == workspace)
                .order_by(AuditEntry.id.desc())
                .limit(limit)
            )
            for row in rows:
                who = row.member_id or row.key_id or row.actor_type
                typer.echo(
                    f"{row.at.isoformat()}\t{row.actor_type}\t{who}\t{row.action}\t"
                    f"{row.outcome}\t{row.changes}"
                )
    finally:
        runtime.close()


@db_app.command("upgrade")
def db_upgrade(data_dir: DataDir = None) -> None:
    """Apply every pending migration (SQLite or PostgreSQL)."""
    from liebian.migrations import upgrade

    settings = _settings(data_dir)
    upgrade(settings.resolved_database_url)
    typer.echo("database is up to date")


@jobs_app.command("run")
def jobs_run(
    data_dir: DataDir = None,
    webhooks: Annotated[bool, typer.Option(help="also deliver due webhooks")] = True,
    segments: Annotated[
        bool, typer.Option(help="also rebuild segments and rule tags, reconcile contacts")
    ] = True,
) -> None:
    """Run every job once: expire groups (voiding orders) and assists, settle due rewards,
    deliver due webhooks, push tag changes to WeCom, rebuild segments and rule tags and
    reconcile contacts' computed attributes from the event store. Safe beside a running
    server or another cron run (the event store parts are skipped while a server holds the
    embedded DuckDB file)."""
    from liebian.app.runtime import Runtime
    from liebian.app.scheduler import delivery_policy
    from liebian.campaigns.tasks import run_fission_jobs
    from liebian.kit.clock import utcnow
    from liebian.team.audit import acting_as
    from liebian.team.audit import install as install_audit
    from liebian.webhooks.deliver import deliver_due
    from liebian.webhooks.outbox import install

    runtime = Runtime.build(_settings(data_dir))
    try:
        install(runtime.sessions)
        install_audit(runtime.sessions)
        # What the fission jobs change is recorded as the CLI's (decision 0028); deliveries,
        # tag pushes and rebuilds below are not audited, as under the server's scheduler.
        with acting_as("cli", "cli.jobs_run"):
            result = run_fission_jobs(runtime.sessions, utcnow())
        typer.echo(
            f"拼团失败 groups failed: {result.groups_failed}  助力过期 assists expired: "
            f"{result.assists_expired}  奖励发放 rewards issued: {result.rewards_issued}"
        )
        if webhooks:
            sent = deliver_due(
                runtime.sessions, runtime.cipher, delivery_policy(runtime), limit=500
            )
            typer.echo(
                f"webhooks delivered: {sent.delivered}  failed (will retry): {sent.failed}  "
                f"dead: {sent.dead}"
            )
        # WeCom: contacts' tag changes → corp tags (connectors/wecom/tags.py).
        from liebian.connectors.wecom.tags import push_tag_changes

        typer.echo(f"企微标签 WeCom tag pushes: {push_tag_changes(runtime)}")
        if segments:
            _rebuild_segments_and_people(runtime)
    finally:
        runtime.close()


def _rebuild_segments_and_people(runtime: Any) -> None:
    """Full segment / rule-tag rebuild and contacts' computed attributes, from the event store.
    The embedded DuckDB file takes one process at a time: beside a running server it is in
    use, and the server's own scheduler does this work (LIEBIAN_SEGMENTS_REBUILD_INTERVAL)."""
    from liebian.app.scheduler import people_job
    from liebian.events.store.factory import open_event_store
    from liebian.segments.tasks import rebuild_job

    try:
        runtime.event_store = open_event_store(runtime.settings.resolved_events_url)
    except Exception as exc:  # DuckDB: "Could not set lock on file" while a server holds it
        typer.echo(f"人群 segments: skipped, the event store is in use ({type(exc).__name__}); "
                   "the running server rebuilds them on its own schedule")  # fmt: skip
        return
    typer.echo(f"人群 segments and rule tags rebuilt: {rebuild_job(runtime)()}")
    typer.echo(f"用户属性 contacts reconciled: {people_job(runtime)()}")


@app.command()
def worker(
    data_dir: DataDir = None,
    batch: Annotated[int, typer.Option(help="steps claimed per batch")] = 500,
    interval: Annotated[float, typer.Option(help="seconds to sleep when nothing is due")] = 0.2,
) -> None:
    """Run journey steps (旅程) until stopped (SIGTERM/SIGINT). Start several on PostgreSQL:
    they share due steps without running one twice; set LIEBIAN_JOURNEYS_INTERVAL=0 on the
    servers when workers do this instead."""
    import signal
    import threading

    from liebian.app.runtime import Runtime
    from liebian.automation.executor import ExecutorThread
    from liebian.automation.wiring import TriggerThread, executor_for

    runtime = Runtime.build(_settings(data_dir))
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    thread = ExecutorThread(executor_for(runtime, batch=batch), interval=interval)
    thread.start()
    # Bus triggers (the outbox rows any process writes) and date/inactivity scans, so a
    # deployment whose servers run LIEBIAN_JOURNEYS_INTERVAL=0 still enrols people.
    triggers = TriggerThread(runtime, max(interval, 0.5))
    triggers.start()
    typer.echo(f"journey worker {os.getpid()} running", err=True)
    try:
        stop.wait()
    finally:
        triggers.stop()
        thread.stop()
        runtime.close()


def main() -> None:  # pragma: no cover - console entry
    app()


if __name__ == "__main__":  # pragma: no cover - `python -m liebian.cli`
    main()
