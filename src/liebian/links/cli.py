"""``liebian domains …``: list, add, block and unblock short domains from the shell.

The same rules as the API (``links.domains``); the actor recorded in the history is "cli".
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from sqlalchemy import select
from sqlalchemy.orm import Session

from liebian.kit.errors import DomainError
from liebian.kit.settings import Settings
from liebian.links import domains
from liebian.links.models import Domain

domains_app = typer.Typer(help="short domains and their health", no_args_is_help=True)

DataDir = Annotated[str | None, typer.Option(help="data directory (env LIEBIAN_DATA_DIR)")]
WorkspaceOpt = Annotated[
    str | None, typer.Option("--workspace", help="workspace id (default: the first)")
]


@contextmanager
def _session(data_dir: str | None, command: str = "") -> Iterator[Session]:
    from liebian.app.runtime import Runtime
    from liebian.kit.db import session_scope

    if data_dir:
        os.environ["LIEBIAN_DATA_DIR"] = data_dir
    from liebian.team.audit import cli_context, install

    runtime = Runtime.build(Settings())
    install(runtime.sessions)
    try:
        with session_scope(runtime.sessions) as session:
            # Recorded in the audit log as the CLI's (team/audit.py): "cli.links_import" …
            ctx = cli_context(session, command)
            ctx.force = command.endswith("_export")
            yield session
    except DomainError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(1) from None
    finally:
        runtime.close()


def _actor(session: Session, workspace: str | None) -> domains.Actor:
    from liebian.workspaces.models import Workspace

    ws_id = workspace or session.scalars(select(Workspace.id).order_by(Workspace.id)).first()
    if ws_id is None or session.get(Workspace, ws_id) is None:
        typer.echo("error: no such workspace; run `liebian init` first", err=True)
        raise typer.Exit(1)
    from liebian.team.audit import AUDIT_KEY

    if AUDIT_KEY in session.info:
        session.info[AUDIT_KEY].workspace_id = ws_id
    return domains.Actor(ws_id, "cli")


def _line(domain: Domain) -> str:
    primary = "primary" if domain.is_primary else "-"
    changed = domain.status_changed_at.isoformat() if domain.status_changed_at else "-"
    return f"{domain.id}\t{domain.host}\t{domain.status}\t{primary}\t{changed}\t{domain.note}"


@domains_app.command("list")
def list_cmd(workspace: WorkspaceOpt = None, data_dir: DataDir = None) -> None:
    """id, host, status, primary, status changed at, note — one domain per line."""
    with _session(data_dir, "domains_list") as session:
        actor = _actor(session, workspace)
        for domain in domains.list_domains(session, actor.workspace_id):
            typer.echo(_line(domain))


@domains_app.command("add")
def add_cmd(
    host: str,
    primary: Annotated[bool, typer.Option("--primary", help="make it the primary domain")] = False,
    workspace: WorkspaceOpt = None,
    data_dir: DataDir = None,
) -> None:
    with _session(data_dir, "domains_add") as session:
        domain = domains.add_domain(session, _actor(session, workspace), host, is_primary=primary)
        typer.echo(_line(domain))


@domains_app.command("block")
def block_cmd(
    domain: Annotated[str, typer.Argument(help="domain id or host")],
    reason: Annotated[str, typer.Option("--reason", help="why, e.g. 微信内提示停止访问")],
    workspace: WorkspaceOpt = None,
    data_dir: DataDir = None,
) -> None:
    """Mark a domain blocked; short links move to a healthy domain of the workspace."""
    with _session(data_dir, "domains_block") as session:
        actor = _actor(session, workspace)
        found = domains.find_domain(session, actor.workspace_id, domain)
        typer.echo(_line(domains.block_domain(session, actor, found.id, reason)))


@domains_app.command("unblock")
def unblock_cmd(
    domain: Annotated[str, typer.Argument(help="domain id or host")],
    note: Annotated[str, typer.Option("--note")] = "",
    workspace: WorkspaceOpt = None,
    data_dir: DataDir = None,
) -> None:
    with _session(data_dir, "domains_unblock") as session:
        actor = _actor(session, workspace)
        found = domains.find_domain(session, actor.workspace_id, domain)
        typer.echo(_line(domains.unblock_domain(session, actor, found.id, note)))


links_app = typer.Typer(help="links: import from and export to CSV", no_args_is_help=True)


@links_app.command("import")
def links_import(
    path: Annotated[str, typer.Argument(help="CSV file (header row; columns as in the export)")],
    workspace: WorkspaceOpt = None,
    data_dir: DataDir = None,
) -> None:
    """Create links from a CSV file, 10,000 rows per batch; a bad row rejects its whole batch."""
    from liebian.kit.auth import Principal, Role
    from liebian.links import service

    with open(path, encoding="utf-8-sig") as fh:
        rows = service.parse_csv(fh.read())
    created = 0
    for start in range(0, len(rows), service.MAX_BULK):
        with _session(data_dir, "links_import") as session:
            actor = _actor(session, workspace)
            principal = Principal(workspace_id=actor.workspace_id, role=Role.operator)
            policy = service.LinkPolicy(blocklist=tuple(Settings().url_blocklist))
            try:
                created += len(
                    service.bulk_create(
                        session, principal, rows[start : start + service.MAX_BULK], policy
                    )
                )
            except service.BulkRejected as exc:
                for problem in exc.details or []:
                    row = problem["row"] + start
                    typer.echo(
                        f"row {row}: {problem.get('field') or ''} {problem['message']}", err=True
                    )
                typer.echo(
                    f"error: {exc.message} (rows {start + 1}–{start + service.MAX_BULK})", err=True
                )
                raise typer.Exit(1) from None
    typer.echo(f"{created} links created")


@links_app.command("export")
def links_export(
    path: Annotated[str, typer.Argument(help="where to write the CSV ('-' for stdout)")] = "-",
    workspace: WorkspaceOpt = None,
    data_dir: DataDir = None,
) -> None:
    """Write every link of the workspace as CSV (UTF-8 with BOM, opens in Excel)."""
    import sys

    from liebian.links import repository, service

    with _session(data_dir, "links_export") as session:
        actor = _actor(session, workspace)
        chunks = service.export_csv(repository.iter_links(session, actor.workspace_id))
        if path == "-":
            for chunk in chunks:
                sys.stdout.write(chunk)
        else:
            with open(path, "w", encoding="utf-8", newline="") as fh:
                fh.writelines(chunks)
