"""The audit log: one central hook on the session, not a call in every domain.

Every request (app/deps.py ``get_session``) and CLI command opens its session with an
``AuditContext``. Two SQLAlchemy listeners on the session factory then do the work:

- ``before_flush`` notes each new, changed and deleted row (the fields, before and after;
  encrypted PII, hashes and secrets masked), and the engine's ``after_execute`` notes bulk
  statements outside a flush (``session.execute(update(…))``, Core executemany on the
  session's connection), by table and row count;
- ``before_commit`` writes one ``audit_log`` row for what the transaction changed, in the
  same transaction: the change and its record commit together or not at all (recorded once).

The action is domain-level: the API operation's name (``revoke_key``, ``patch_campaign``) or
an explicit one (``auth.sign_in``, ``contacts.export``). Requests that change nothing write
nothing, except exports, which are recorded as such. Refused and failed attempts are written
by ``record_attempt`` in a transaction of their own, since theirs rolls back.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, cast

from sqlalchemy import Delete, Insert, Table, event, insert, inspect
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql.dml import UpdateBase

from liebian.kit.auth import Principal
from liebian.kit.clock import utcnow
from liebian.kit.ids import new_id
from liebian.team.models import AuditEntry

log = logging.getLogger("liebian.audit")
AUDIT_KEY = "liebian.audit"
MAX_OBJECTS = 50  # per record: a bulk import lists the first 50 and counts the rest
_SECRET_WORDS = ("password", "secret", "token", "key_hash", "code_hash")
_SKIP_TABLES = frozenset({"audit_log", "team_sessions", "outbox"})


# Personal values kept in clear columns: a custom attribute may hold a name or a birthday, a
# screening answer a child's age. The log says they changed, never what they were.
_PERSONAL = {
    "contact_attributes": frozenset({"value_str", "value_num", "value_date", "value_bool"}),
    "contacts": frozenset({"avatar_url"}),
    "community_members": frozenset({"answers"}),
}


def _masked(column: str, value: Any, table: str = "") -> Any:
    if value is None:
        return None
    if column in _PERSONAL.get(table, ()):
        return "***"
    if column.endswith("_enc"):
        return "***"  # PII: encrypted at rest, never in the log
    if column.endswith("_hash") or any(w in column for w in _SECRET_WORDS):
        return "***"
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, str | int | float | bool):
        return value if not isinstance(value, str) else value[:500]
    return str(value)[:500]


@dataclass
class AuditContext:
    """Who acts in this session, and from where. ``principal`` may be filled late (the
    request's principal is resolved after its session opens)."""

    actor_type: str = "anonymous"
    principal: Principal | None = None
    action: str = ""
    object_id: str | None = None
    ip: str = ""
    user_agent: str = ""
    workspace_id: str = ""
    force: bool = False  # write a row even without changes (exports, sign-ins)
    member_id: str | None = None  # who, when there is no principal yet (sign-in)
    objects: dict[str, dict[str, Any]] = field(default_factory=dict)
    extra_objects: int = 0
    bulk: list[str] = field(default_factory=list)
    request: Any = None
    by_workspace: dict[str, str] = field(default_factory=dict)

    def resolve(self) -> None:
        if self.principal is None and self.request is not None:
            self.principal = getattr(self.request.state, "principal", None)
        if self.principal is not None:
            self.workspace_id = self.workspace_id or self.principal.workspace_id
            if self.actor_type == "anonymous":
                self.actor_type = "member" if self.principal.member_id else "key"
        if not self.action and self.request is not None:
            route = self.request.scope.get("route")
            self.action = getattr(route, "name", "") or self.request.method.lower()
        if self.object_id is None and self.request is not None:
            params = self.request.path_params
            if params:
                self.object_id = str(list(params.values())[-1])[:100]

    def note(self, key: str, entry: dict[str, Any], workspace_id: str = "") -> None:
        if workspace_id and not self.workspace_id:
            # Work outside a request (a job, the CLI) spans workspaces: each row is filed
            # under its own workspace when the record is written.
            self.by_workspace.setdefault(key, workspace_id)
        self._note(key, entry)

    def _note(self, key: str, entry: dict[str, Any]) -> None:
        if key in self.objects:
            known = self.objects[key]
            for name, change in entry.get("fields", {}).items():
                old = known.setdefault("fields", {}).get(name)
                known["fields"][name] = [old[0] if old else change[0], change[1]]
            return
        if len(self.objects) >= MAX_OBJECTS:
            self.extra_objects += 1
            return
        self.objects[key] = entry


def _identity(obj: Any) -> str:
    state = inspect(obj)
    values = [str(getattr(obj, c.key, "")) for c in state.mapper.primary_key]
    return ":".join(values)


_COLUMNS: dict[Any, tuple[str, ...]] = {}


def _columns(mapper: Any) -> tuple[str, ...]:
    """A mapper's column attribute names (cached: the mapper is fixed once configured)."""
    found = _COLUMNS.get(mapper)
    if found is None:
        found = _COLUMNS[mapper] = tuple(c.key for c in mapper.column_attrs)
    return found


def _before_flush(session: Session, _ctx: Any, _instances: Any) -> None:
    ctx: AuditContext | None = session.info.get(AUDIT_KEY)
    if ctx is None:
        return
    for obj in session.new:
        table = obj.__table__.name
        if table in _SKIP_TABLES:
            continue
        state = inspect(obj)
        values = state.dict  # what was set: a pending row's unset columns are None anyway
        fields = {
            key: [None, _masked(key, values[key], table)]
            for key in _columns(state.mapper)
            if values.get(key) is not None
        }
        ctx.note(
            f"{table}:{_identity(obj)}",
            {"op": "create", "fields": fields},
            getattr(obj, "workspace_id", "") or "",
        )
    for obj in session.dirty:
        table = obj.__table__.name
        if table in _SKIP_TABLES or not session.is_modified(obj):
            continue
        state = inspect(obj)
        fields = {}
        columns = _columns(state.mapper)
        # Only the attributes changed since load (their old values are kept there), not a
        # history look-up for every column of the row.
        for key in list(state.committed_state):
            if key not in columns:
                continue
            hist = state.attrs[key].history
            if hist.has_changes():
                before = hist.deleted[0] if hist.deleted else None
                after = hist.added[0] if hist.added else None
                if before != after:
                    fields[key] = [_masked(key, before, table), _masked(key, after, table)]
        if fields:
            ctx.note(
                f"{table}:{_identity(obj)}",
                {"op": "update", "fields": fields},
                getattr(obj, "workspace_id", "") or "",
            )
    for obj in session.deleted:
        table = obj.__table__.name
        if table not in _SKIP_TABLES:
            ctx.note(
                f"{table}:{_identity(obj)}",
                {"op": "delete", "fields": {}},
                getattr(obj, "workspace_id", "") or "",
            )


_CONN_KEY = "liebian.audit.conn"


def _after_begin(session: Session, _transaction: Any, connection: Any) -> None:
    """The connection carries its session's context while the transaction lasts, so bulk
    statements run on ``session.connection()`` (Core executemany) are noted too."""
    ctx = session.info.get(AUDIT_KEY)
    if ctx is None:
        acting = _ACTING.get()
        if acting is not None:  # a job or CLI command that is audited (``acting_as``)
            ctx = session.info[AUDIT_KEY] = AuditContext(actor_type=acting[0], action=acting[1])
    if ctx is None:
        connection.info.pop(_CONN_KEY, None)
    else:
        connection.info[_CONN_KEY] = (ctx, session)


def _after_execute(
    conn: Any, clause: Any, multiparams: Any, _params: Any, _options: Any, result: Any
) -> None:
    entry = conn.info.get(_CONN_KEY)
    if entry is None or not isinstance(clause, UpdateBase):
        return
    ctx, session = entry
    if getattr(session, "_flushing", False):
        return  # the flush's own statements: noted row by row in _before_flush
    table = getattr(getattr(clause, "table", None), "name", "")
    if not table or table in _SKIP_TABLES or len(ctx.bulk) >= MAX_OBJECTS:
        return
    kind = (
        "insert"
        if isinstance(clause, Insert)
        else "delete"
        if isinstance(clause, Delete)
        else "update"
    )
    rows = (
        len(multiparams)
        if multiparams and isinstance(multiparams, list | tuple) and len(multiparams) > 1
        else result.rowcount
    )
    if rows == 0 or ((rows is None or rows < 0) and ctx.actor_type in _UNBOUND_ACTORS):
        # Nothing changed (a job's expiry sweep with nothing due is not a change); a job's
        # statement whose count the driver cannot tell (SQLite RETURNING) is left out too.
        return
    ctx.bulk.append(
        f"{kind} {table}: {rows} rows" if rows is not None and rows >= 0 else f"{kind} {table}"
    )


def _before_commit(session: Session) -> None:
    ctx: AuditContext | None = session.info.get(AUDIT_KEY)
    if ctx is None:
        return
    session.flush()  # the last changes reach _before_flush first
    if not (ctx.objects or ctx.bulk or ctx.force):
        return
    ctx.resolve()
    if not ctx.workspace_id and ctx.actor_type not in _UNBOUND_ACTORS:
        # Public pages, participants, the hooks worker: not the team's changes.
        ctx.objects.clear()
        ctx.bulk.clear()
        return
    if not ctx.workspace_id and ctx.by_workspace:
        _split_by_workspace(session, ctx)
        return
    changes: dict[str, Any] = dict(ctx.objects)
    if ctx.extra_objects:
        changes["_more"] = ctx.extra_objects
    if ctx.bulk:
        changes["_bulk"] = ctx.bulk
    object_id = ctx.object_id
    if object_id is None and ctx.objects:
        object_id = next(iter(ctx.objects)).split(":", 1)[-1][:100]
    object_type = next(iter(ctx.objects)).split(":", 1)[0] if ctx.objects else ""
    _insert(
        session,
        _row(ctx, changes, object_id=object_id, object_type=object_type, outcome="ok", status=200),
    )
    ctx.objects, ctx.bulk, ctx.extra_objects, ctx.force = {}, [], 0, False


# Actors whose sessions belong to no one workspace: their rows are filed by the workspace of
# each changed row (``_split_by_workspace``); what names no workspace (a set-based statement)
# is filed under "" — the installation's, read by ``liebian audit`` on the server.
_UNBOUND_ACTORS = frozenset({"cli", "system"})


def _split_by_workspace(session: Session, ctx: AuditContext) -> None:
    """One record per workspace the job or command changed (each workspace reads its own)."""
    groups: dict[str, dict[str, Any]] = {}
    for key, entry in ctx.objects.items():
        groups.setdefault(ctx.by_workspace.get(key, ""), {})[key] = entry
    if ctx.bulk:
        groups.setdefault("", {})["_bulk"] = ctx.bulk
    if ctx.extra_objects:
        groups.setdefault("", {})["_more"] = ctx.extra_objects
    for workspace_id, changes in groups.items():
        first = next((k for k in changes if not k.startswith("_")), "")
        ctx.workspace_id = workspace_id
        _insert(
            session,
            _row(
                ctx,
                changes,
                object_id=ctx.object_id or (first.split(":", 1)[-1][:100] if first else None),
                object_type=first.split(":", 1)[0] if first else "",
                outcome="ok",
                status=200,
            ),
        )
    ctx.workspace_id = ""
    ctx.objects, ctx.bulk, ctx.extra_objects, ctx.force = {}, [], 0, False
    ctx.by_workspace = {}


# -- work outside a request: scheduled jobs and CLI commands -----------------------------------

_ACTING: ContextVar[tuple[str, str] | None] = ContextVar("liebian_audit_acting", default=None)


@contextmanager
def acting_as(actor_type: str, action: str) -> Iterator[None]:
    """Every session that begins inside (on this thread) is audited as ``actor_type``
    (``system`` for a scheduled job, ``cli`` for a command) doing ``action``
    (``system.fission``, ``cli.jobs_run``), without each domain passing it along. Which jobs
    are audited is decision 0028."""
    token = _ACTING.set((actor_type, action))
    try:
        yield
    finally:
        _ACTING.reset(token)


def audited(actor_type: str, action: str, job: Any) -> Any:
    """``job`` (a no-argument callable) run under :func:`acting_as`."""

    def run() -> Any:
        with acting_as(actor_type, action):
            return job()

    return run


def _insert(session: Session, row: dict[str, Any]) -> None:
    """The record as one Core INSERT on the session's connection (same transaction), not an
    ORM object and a second unit-of-work flush inside the commit."""
    session.execute(_AUDIT_INSERT, row)


_AUDIT_INSERT = insert(cast(Table, AuditEntry.__table__))


def _entry(
    ctx: AuditContext,
    changes: dict[str, Any],
    *,
    object_id: str | None,
    object_type: str,
    outcome: str,
    status: int,
) -> AuditEntry:
    return AuditEntry(
        **_row(
            ctx, changes, object_id=object_id, object_type=object_type, outcome=outcome,
            status=status,
        )
    )  # fmt: skip


def _row(
    ctx: AuditContext,
    changes: dict[str, Any],
    *,
    object_id: str | None,
    object_type: str,
    outcome: str,
    status: int,
) -> dict[str, Any]:
    principal = ctx.principal
    return dict(
        id=new_id("aud"),
        workspace_id=ctx.workspace_id,
        at=utcnow(),
        actor_type=ctx.actor_type,
        member_id=principal.member_id if principal else ctx.member_id,
        key_id=principal.key_id if principal else None,
        action=(ctx.action or "change")[:100],
        object_type=object_type[:50],
        object_id=object_id,
        changes=json.dumps(changes, ensure_ascii=False, default=str),
        ip=ctx.ip[:64],
        user_agent=ctx.user_agent[:300],
        outcome=outcome,
        status=status,
    )


def install(factory: sessionmaker[Session]) -> None:
    """The hook on every session the factory makes (idempotent)."""
    if not event.contains(factory, "before_flush", _before_flush):
        event.listen(factory, "before_flush", _before_flush)
        event.listen(factory, "after_begin", _after_begin)
        event.listen(factory, "before_commit", _before_commit)
    bind = factory.kw.get("bind")
    if bind is not None and not event.contains(bind, "after_execute", _after_execute):
        event.listen(bind, "after_execute", _after_execute)


def cli_context(session: Session, command: str, workspace_id: str = "") -> AuditContext:
    """What a CLI command changes is recorded as done by ``cli`` (the server's operator)."""
    ctx = AuditContext(actor_type="cli", action=f"cli.{command}", workspace_id=workspace_id)
    session.info[AUDIT_KEY] = ctx
    return ctx


def record_attempt(
    factory: sessionmaker[Session],
    ctx: AuditContext,
    *,
    outcome: str,
    status: int,
    detail: dict[str, Any] | None = None,
) -> None:
    """A refused or failed attempt (its own transaction rolled back), or a failed sign-in:
    written in a short transaction of its own. Best effort: never turns a 4xx into a 500."""
    ctx.resolve()
    if not ctx.workspace_id:
        return
    try:
        with factory() as session:
            session.add(
                _entry(
                    ctx,
                    detail or {},
                    object_id=ctx.object_id,
                    object_type="",
                    outcome=outcome,
                    status=status,
                )
            )
            session.commit()
    except Exception:  # pragma: no cover - the database is down: the request's error stands
        log.exception("could not record a refused attempt in the audit log")


def purge_expired(session: Session, now: datetime | None = None) -> int:
    """The retention: entries older than each workspace's period (``team_policies``, default
    365 days) leave — the only DELETE on the log. The scheduler's ``audit_retention`` job."""
    from datetime import timedelta

    from sqlalchemy import delete, select

    from liebian.team.models import SecurityPolicy
    from liebian.workspaces.models import Workspace

    now = now or utcnow()
    rows = session.execute(
        select(SecurityPolicy.workspace_id, SecurityPolicy.audit_retention_days)
    ).all()
    days = {ws: n for ws, n in rows}
    removed = 0
    for ws_id in list(session.scalars(select(Workspace.id))):
        cutoff = now - timedelta(days=days.get(ws_id, 365))
        result = session.execute(
            delete(AuditEntry).where(AuditEntry.workspace_id == ws_id, AuditEntry.at < cutoff)
        )
        count = int(result.rowcount)  # type: ignore[attr-defined]
        removed += count
        if count:
            # The purge is itself recorded (the log's own table is never noted by the hook).
            ctx = AuditContext(
                actor_type="system", action="system.audit_retention", workspace_id=ws_id
            )
            changes = {"removed": count, "before": cutoff.isoformat()}
            session.add(_entry(ctx, changes, object_id=None, object_type="audit_log",
                               outcome="ok", status=200))  # fmt: skip
    return removed
