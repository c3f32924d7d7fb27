"""All SQL of journeys: runs and step rows written set-based, the claim, the marks."""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, bindparam, func, or_, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from liebian.automation.models import Journey, JourneyRun, JourneyStepExecution, JourneyVersion
from liebian.kit.ids import new_id

E = JourneyStepExecution
_CHUNK = 500
# A step given back after a failed try keeps this prefix in ``result`` until it is marked.
RETRY_PREFIX = "retry:"
# Executors of this process waiting for work (executor.ExecutorThread): set when steps that
# may be due soon are committed here (an enrolment, a matched wait), so they claim at once
# instead of at their next look.
_WAITING: set[threading.Event] = set()
_WAITING_LOCK = threading.Lock()


def add_waiter(event: threading.Event) -> None:
    with _WAITING_LOCK:
        _WAITING.add(event)


def remove_waiter(event: threading.Event) -> None:
    with _WAITING_LOCK:
        _WAITING.discard(event)


def wake() -> None:
    with _WAITING_LOCK:
        waiting = list(_WAITING)
    for event in waiting:
        event.set()


def wake_after_commit(session: Session) -> None:
    """Wake this process's executors once the transaction commits (never on a rollback)."""
    from liebian.kit.db import after_commit

    after_commit(session, wake)


def _insert(dialect: str, table: Any) -> Any:
    make: Any = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}[dialect]
    return make(table)


@functools.cache
def _insert_runs_stmt(dialect: str) -> Any:
    # No conflict target: either unique (entry key, or one active run per contact) refuses.
    return (
        _insert(dialect, JourneyRun.__table__)
        .on_conflict_do_nothing()
        .returning(JourneyRun.__table__.c.id, JourneyRun.__table__.c.contact_id)
    )


@functools.cache
def _insert_steps_stmt(dialect: str) -> Any:
    return _insert(dialect, E.__table__).on_conflict_do_nothing(
        index_elements=["run_id", "step_id"]
    )


def get(session: Session, workspace_id: str, journey_id: str) -> Journey | None:
    journey = session.get(Journey, journey_id)
    return journey if journey is not None and journey.workspace_id == workspace_id else None


def by_name(session: Session, workspace_id: str, name: str) -> Journey | None:
    return session.scalars(
        select(Journey).where(Journey.workspace_id == workspace_id, Journey.name == name)
    ).first()


def version(session: Session, journey_id: str, number: int) -> JourneyVersion | None:
    return session.get(JourneyVersion, (journey_id, number))


def insert_runs(session: Session, rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """Insert runs, skipping any an entry rule's unique key refuses; (run id, contact id) of
    the new ones."""
    if not rows:
        return []
    stmt = _insert_runs_stmt(session.get_bind().dialect.name)
    out: list[tuple[str, str]] = []
    for start in range(0, len(rows), _CHUNK):
        # One statement per row: a batch with RETURNING would stop at the first conflict on
        # some drivers, and SQLite reports the inserted rows only this way.
        for row in rows[start : start + _CHUNK]:
            got = session.execute(stmt, row).first()
            if got is not None:
                out.append((got[0], got[1]))
    return out


def insert_steps(session: Session, rows: list[dict[str, Any]]) -> None:
    if rows:
        stmt = _insert_steps_stmt(session.get_bind().dialect.name)
        for start in range(0, len(rows), _CHUNK):
            session.execute(stmt, rows[start : start + _CHUNK])


def step_row(
    run_id: str,
    workspace_id: str,
    journey_id: str,
    step: dict[str, Any],
    due: datetime,
    now: datetime,
    waiting_event: str | None = None,
) -> dict[str, Any]:
    return {
        "id": new_id("jse"),
        "workspace_id": workspace_id,
        "journey_id": journey_id,
        "run_id": run_id,
        "step_id": step["id"],
        "step_type": step["type"],
        "status": "pending",
        "due_at": due,
        "lease_until": None,
        "claim_token": None,
        "attempts": 0,
        "waiting_event": waiting_event,
        "event_matched": False,
        "result": None,
        "detail": None,
        "next_step_id": None,
        "created_at": now,
        "started_at": None,
        "finished_at": None,
    }


def latest_entries(
    session: Session, journey_id: str, contact_ids: Sequence[str]
) -> dict[str, datetime]:
    out: dict[str, datetime] = {}
    for start in range(0, len(contact_ids), _CHUNK):
        rows = session.execute(
            select(JourneyRun.contact_id, func.max(JourneyRun.entered_at))
            .where(
                JourneyRun.journey_id == journey_id,
                JourneyRun.contact_id.in_(contact_ids[start : start + _CHUNK]),
            )
            .group_by(JourneyRun.contact_id)
        )
        out.update({c: t for c, t in rows})
    return out


@dataclass(frozen=True, slots=True)
class Claimed:
    """A claimed step row: what the executor needs of it."""

    execution_id: str
    run_id: str
    step_id: str
    attempts: int
    event_matched: bool
    result: str | None


@dataclass(frozen=True, slots=True)
class RunRef:
    """What the executor reads of a run (and its contact's external id, for the events),
    read in the claim's transaction instead of loading ``JourneyRun`` objects."""

    id: str
    journey_id: str
    version: int
    workspace_id: str
    contact_id: str
    status: str
    external_id: str | None


def claim(
    session: Session | Connection, now: datetime, lease_until: datetime, token: str, limit: int
) -> list[Claimed]:
    """Take up to ``limit`` due steps of live journeys whose lease is free. On PostgreSQL
    concurrent workers skip each other's rows (``FOR UPDATE SKIP LOCKED``); on SQLite the
    write transaction is already exclusive. One statement: the rows' flags come back with
    the claim (RETURNING), not from a second read."""
    not_live = select(Journey.id).where(Journey.status != "live")
    due = (
        select(E.id)
        .where(
            E.status == "pending",
            E.due_at <= now,
            or_(E.lease_until.is_(None), E.lease_until <= now),
            E.journey_id.not_in(not_live),
        )
        .order_by(E.due_at)
        .limit(limit)
        .with_for_update(skip_locked=True, of=E)
    )
    stmt = (
        update(E)
        .where(E.id.in_(due.scalar_subquery()))
        .values(
            lease_until=lease_until,
            claim_token=token,
            attempts=E.attempts + 1,
            started_at=func.coalesce(E.started_at, now),
        )
        .returning(E.id, E.run_id, E.step_id, E.attempts, E.event_matched, E.result)
        .execution_options(synchronize_session=False)
    )
    return [Claimed(a, b, c, n, bool(m), r) for a, b, c, n, m, r in session.execute(stmt)]


# PostgreSQL: the claim and the run read as one statement (one round trip a batch instead of
# two): the same rows as ``claim`` — due, pending, lease free, journey live, earliest due
# first, others' locked rows skipped — with each one's run and its contact's external id.
_CLAIM_WITH_RUNS_PG = text(
    """
WITH claimed AS (
    UPDATE journey_step_executions
    SET lease_until = :lease_until, claim_token = :token, attempts = attempts + 1,
        started_at = coalesce(started_at, :now)
    WHERE id IN (
        SELECT e.id FROM journey_step_executions AS e
        WHERE e.status = 'pending' AND e.due_at <= :now
          AND (e.lease_until IS NULL OR e.lease_until <= :now)
          AND e.journey_id NOT IN (SELECT j.id FROM journeys AS j WHERE j.status <> 'live')
        ORDER BY e.due_at
        LIMIT :limit
        FOR UPDATE OF e SKIP LOCKED
    )
    RETURNING id, run_id, step_id, attempts, event_matched, result
)
SELECT c.id, c.run_id, c.step_id, c.attempts, c.event_matched, c.result,
       r.journey_id, r.version, r.workspace_id, r.contact_id, r.status,
       (SELECT p.external_id FROM contacts AS p WHERE p.id = r.contact_id)
FROM claimed AS c LEFT JOIN journey_runs AS r ON r.id = c.run_id
"""
)


def claim_with_runs(
    conn: Connection, now: datetime, lease_until: datetime, token: str, limit: int
) -> tuple[list[Claimed], dict[str, RunRef]]:
    """PostgreSQL: :func:`claim` and :func:`run_refs` of the claimed rows in one statement."""
    claimed: list[Claimed] = []
    runs: dict[str, RunRef] = {}
    params = {"now": now, "lease_until": lease_until, "token": token, "limit": limit}
    for row in conn.execute(_CLAIM_WITH_RUNS_PG, params):
        claimed.append(Claimed(row[0], row[1], row[2], row[3], bool(row[4]), row[5]))
        if row[6] is not None:
            runs[row[1]] = RunRef(row[1], *row[6:])
    return claimed, runs


def run_refs(session: Session | Connection, ids: Iterable[str]) -> dict[str, RunRef]:
    """The runs of ``ids`` with their contact's external id, one joined read per chunk."""
    from liebian.contacts.models import Contact

    R = JourneyRun
    wanted = list(dict.fromkeys(ids))
    out: dict[str, RunRef] = {}
    # The external id as a correlated lookup by primary key, not a join: with a join
    # PostgreSQL's planner took a hash join over every contact (90 ms a claim at 100,000
    # contacts, statistics from before a bulk load).
    external = select(Contact.external_id).where(Contact.id == R.contact_id).scalar_subquery()
    for start in range(0, len(wanted), _CHUNK):
        stmt = select(
            R.id, R.journey_id, R.version, R.workspace_id, R.contact_id, R.status, external
        ).where(R.id.in_(wanted[start : start + _CHUNK]))
        out.update((row[0], RunRef(*row)) for row in session.execute(stmt))
    return out


_NEXT_CLAIMABLE = (
    select(E.due_at)
    .where(
        E.status == "pending",
        or_(E.lease_until.is_(None), E.lease_until <= bindparam("now")),
        E.journey_id.not_in(select(Journey.id).where(Journey.status != "live")),
    )
    .order_by(E.due_at)
    .limit(1)
)


def next_claimable(conn: Session | Connection, now: datetime) -> datetime | None:
    """The due time of the first step a claim at ``now`` or later could take: pending, its
    lease free, its journey live — at or before ``now`` when a claim would find work now.
    A read only (no lock, no write): an idle executor looks with it before it claims
    (decision 0051). The (status, due_at) index in order, stopping at the first match."""
    return conn.execute(_NEXT_CLAIMABLE, {"now": now}).scalar()


def next_due(session: Session | Connection, now: datetime) -> datetime | None:
    """The earliest due time after ``now`` of a pending row: the executor sleeps until then
    (a range read on the (status, due_at) index)."""
    return session.scalar(select(func.min(E.due_at)).where(E.status == "pending", E.due_at > now))


def mark(
    session: Session,
    execution_id: str,
    token: str,
    *,
    status: str,
    result: str,
    now: datetime,
    detail: dict[str, Any] | None = None,
    next_step_id: str | None = None,
) -> bool:
    """Finish a claimed step; False when the claim was lost (its lease expired and another
    worker took it), in which case the caller must not write anything else for it."""
    got = session.execute(
        update(E)
        .where(E.id == execution_id, E.claim_token == token, E.status == "pending")
        .values(
            status=status,
            result=result[:300],
            detail=detail,
            next_step_id=next_step_id,
            finished_at=now,
            lease_until=None,
        )
        .returning(E.id)
        .execution_options(synchronize_session=False)
    ).first()
    return got is not None


def postpone(session: Session, execution_id: str, token: str, due: datetime, why: str) -> bool:
    """Give a claimed step back to run again at ``due`` (quiet hours, a failed try)."""
    got = session.execute(
        update(E)
        .where(E.id == execution_id, E.claim_token == token, E.status == "pending")
        .values(due_at=due, lease_until=None, claim_token=None, result=why[:300])
        .returning(E.id)
        .execution_options(synchronize_session=False)
    ).first()
    return got is not None


def finish_run(
    session: Session, run_id: str, status: str, now: datetime, reason: str | None = None
) -> None:
    session.execute(
        update(JourneyRun)
        .where(JourneyRun.id == run_id, JourneyRun.status == "active")
        .values(status=status, finished_at=now, exit_reason=reason, current_step=None)
        .execution_options(synchronize_session=False)
    )


def set_current(session: Session, run_id: str, step_id: str) -> None:
    session.execute(
        update(JourneyRun)
        .where(JourneyRun.id == run_id, JourneyRun.status == "active")
        .values(current_step=step_id)
        .execution_options(synchronize_session=False)
    )


def exit_active_runs(session: Session, journey_id: str, now: datetime, reason: str) -> int:
    ids = list(
        session.scalars(
            select(JourneyRun.id).where(
                JourneyRun.journey_id == journey_id, JourneyRun.status == "active"
            )
        )
    )
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        session.execute(
            update(JourneyRun)
            .where(JourneyRun.id.in_(chunk))
            .values(status="exited", exit_reason=reason, finished_at=now, current_step=None)
            .execution_options(synchronize_session=False)
        )
        session.execute(
            update(E)
            .where(E.run_id.in_(chunk), E.status == "pending")
            .values(status="skipped", result=f"exited:{reason}", finished_at=now)
            .execution_options(synchronize_session=False)
        )
    return len(ids)


def match_waiting(
    session: Session, workspace_id: str, event: str, contact_ids: Sequence[str], now: datetime
) -> int:
    """A wait_event step of these contacts waiting for ``event`` becomes due now."""
    if not contact_ids:
        return 0
    runs = select(JourneyRun.id).where(
        JourneyRun.workspace_id == workspace_id,
        JourneyRun.status == "active",
        JourneyRun.contact_id.in_(list(contact_ids)),
    )
    got = session.execute(
        update(E)
        .where(
            and_(E.waiting_event == event, E.status == "pending", E.event_matched.is_(False)),
            E.run_id.in_(runs),
        )
        .values(event_matched=True, due_at=now)
        .execution_options(synchronize_session=False)
    )
    matched = int(getattr(got, "rowcount", 0) or 0)
    if matched:
        wake_after_commit(session)
    return matched


_OWNED_PG = text(
    "SELECT id, claim_token, status FROM journey_step_executions WHERE id = ANY(:ids) FOR UPDATE"
)


def owned(session: Session, ids: Sequence[str], token: str) -> set[str]:
    """The rows of ``ids`` still claimed by ``token``, locked until the commit (PostgreSQL),
    so a worker whose lease ran out never marks a row another worker has taken over."""
    out: set[str] = set()
    if session.get_bind().dialect.name == "postgresql":
        # One array parameter instead of a bind parameter per id (rendered and bound one by
        # one by SQLAlchemy: a large share of a small mark's CPU).
        rows = session.execute(_OWNED_PG, {"ids": list(ids)})
        return {i for i, t, st in rows if t == token and st == "pending"}
    for start in range(0, len(ids), _CHUNK):
        # By primary key only, the rest checked here: with ``status = 'pending'`` in the
        # WHERE, SQLite's planner chose the (status, due_at) index and scanned every pending
        # row — 10 ms a call at 15,000 pending rows, a third of the executor's time.
        stmt = (
            select(E.id, E.claim_token, E.status)
            .where(E.id.in_(ids[start : start + _CHUNK]))
            .with_for_update()
        )
        out.update(i for i, t, st in session.execute(stmt) if t == token and st == "pending")
    return out


_MARK = (
    update(E)
    .where(E.id == bindparam("b_id"))
    .values(
        status=bindparam("b_status"),
        result=bindparam("b_result"),
        detail=bindparam("b_detail"),
        next_step_id=bindparam("b_next"),
        finished_at=bindparam("b_now"),
        lease_until=None,
    )
)


def mark_many(session: Session, rows: list[dict[str, Any]], now: datetime) -> None:
    """Mark rows already checked with :func:`owned` in this transaction."""
    if rows:
        for row in rows:
            row["b_now"] = now
        session.connection().execute(_MARK, rows)


_POSTPONE = (
    update(E)
    .where(E.id == bindparam("b_id"))
    .values(due_at=bindparam("b_due"), lease_until=None, claim_token=None,
            result=bindparam("b_result"))
)  # fmt: skip


def postpone_many(session: Session, rows: list[tuple[str, datetime, str]]) -> None:
    if rows:
        session.connection().execute(
            _POSTPONE, [{"b_id": i, "b_due": due, "b_result": why[:300]} for i, due, why in rows]
        )


_MOVE = (
    update(JourneyRun)
    .where(JourneyRun.id == bindparam("b_id"), JourneyRun.status == "active")
    .values(current_step=bindparam("b_step"))
)


def move_runs(session: Session, moves: list[tuple[str, str]]) -> None:
    if moves:
        session.connection().execute(_MOVE, [{"b_id": r, "b_step": s} for r, s in moves])


_FINISH = (
    update(JourneyRun)
    .where(JourneyRun.id == bindparam("b_id"), JourneyRun.status == "active")
    .values(status=bindparam("b_status"), exit_reason=bindparam("b_reason"),
            finished_at=bindparam("b_now"), current_step=None)
)  # fmt: skip


def finish_runs(session: Session, rows: list[tuple[str, str, str | None]], now: datetime) -> None:
    if rows:
        session.connection().execute(
            _FINISH,
            [{"b_id": r, "b_status": st, "b_reason": why, "b_now": now} for r, st, why in rows],
        )


# PostgreSQL: a mark's writes in one statement — the marks, the next rows, the runs moved on
# and the runs finished — each table's rows passed as arrays (``unnest``), instead of four
# statements of which two were executemany (psycopg binds and sends each row of those: ~0.2 ms
# of CPU a row, the largest share of a step's cost on PostgreSQL; decision 0043). Data-modifying
# CTEs all run, referenced or not; no row is changed twice (a run is moved or finished).
def _marks_sql(*, claimed: bool) -> str:
    """The mark statement; ``claimed``: only rows still claimed by ``:token`` are marked, and
    only their runs get a next row, a move or a finish (the ids of the marked rows returned)."""
    mine = "AND e.claim_token = :token AND e.status = 'pending'" if claimed else ""
    of_marked = "AND v.id IN (SELECT run_id FROM marked)" if claimed else ""
    answer = (
        "SELECT id FROM marked"
        if claimed
        else "SELECT (SELECT count(*) FROM marked), (SELECT count(*) FROM inserted),\n"
        "       (SELECT count(*) FROM moved), (SELECT count(*) FROM ended)"
    )
    return f"""
WITH marked AS (
    UPDATE journey_step_executions AS e
    SET status = v.status, result = v.result, detail = CAST(v.detail AS json),
        next_step_id = v.next, finished_at = :done_at, lease_until = NULL
    FROM unnest(CAST(:m_id AS text[]), CAST(:m_status AS text[]), CAST(:m_result AS text[]),
                CAST(:m_detail AS text[]), CAST(:m_next AS text[]))
         AS v(id, status, result, detail, next)
    WHERE e.id = v.id {mine}
    RETURNING {"e.id, e.run_id" if claimed else "1"}
), inserted AS (
    INSERT INTO journey_step_executions
        (id, workspace_id, journey_id, run_id, step_id, step_type, status, due_at, attempts,
         waiting_event, event_matched, created_at)
    SELECT v.id, v.ws, v.journey, v.run, v.step, v.type, 'pending', v.due, 0, v.waiting,
           false, v.created
    FROM unnest(CAST(:n_id AS text[]), CAST(:n_ws AS text[]), CAST(:n_journey AS text[]),
                CAST(:n_run AS text[]), CAST(:n_step AS text[]), CAST(:n_type AS text[]),
                CAST(:n_due AS timestamptz[]), CAST(:n_waiting AS text[]),
                CAST(:n_created AS timestamptz[]))
         AS v(id, ws, journey, run, step, type, due, waiting, created)
    {"WHERE v.run IN (SELECT run_id FROM marked)" if claimed else ""}
    ON CONFLICT (run_id, step_id) DO NOTHING
    RETURNING 1
), moved AS (
    UPDATE journey_runs AS r SET current_step = v.step
    FROM unnest(CAST(:v_id AS text[]), CAST(:v_step AS text[])) AS v(id, step)
    WHERE r.id = v.id AND r.status = 'active' {of_marked}
    RETURNING 1
), ended AS (
    UPDATE journey_runs AS r
    SET status = v.status, exit_reason = v.reason, finished_at = :done_at, current_step = NULL
    FROM unnest(CAST(:f_id AS text[]), CAST(:f_status AS text[]), CAST(:f_reason AS text[]))
         AS v(id, status, reason)
    WHERE r.id = v.id AND r.status = 'active' {of_marked}
    RETURNING 1
)
{answer}
"""


def _pyformat(sql: str) -> str:
    """``:name`` parameters as psycopg's ``%(name)s`` (the mark statements have no other
    colon or percent sign)."""
    assert "%" not in sql and "::" not in sql
    return re.sub(r":([a-z_]+)\b", r"%(\1)s", sql)


def _driver_execute(conn: Any, sql: str, params: dict[str, Any]) -> list[Any]:
    """Run ``sql`` on the psycopg connection under SQLAlchemy's ``conn`` (a Connection or a
    Session: its connection, in its transaction) and return its rows. The mark statements
    are one text statement with ~20 string parameters: through ``Connection.execute``
    SQLAlchemy's parameter and result handling cost ~0.25 ms of CPU a statement, about as
    much as the statement's own binding and round trip (decision 0056)."""
    if isinstance(conn, Session):
        conn = conn.connection()
    driver = conn.connection.driver_connection
    with driver.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchall() if cur.description is not None else []


_WRITE_MARKS_PG = _pyformat(_marks_sql(claimed=False))


def write_marks(
    session: Session,
    marks: list[dict[str, Any]],
    next_rows: list[dict[str, Any]],
    moves: list[tuple[str, str]],
    finished: list[tuple[str, str, str | None]],
    done_at: datetime,
) -> None:
    """A mark transaction's writes for rows already checked with :func:`owned`: the step
    rows marked (``marks``: b_id, b_status, b_result, b_detail, b_next), the next rows
    inserted once (unique on run and step), the runs moved to their next step or finished."""
    if session.get_bind().dialect.name != "postgresql":
        mark_many(session, marks, done_at)
        insert_steps(session, next_rows)
        move_runs(session, moves)
        finish_runs(session, finished, done_at)
        return
    if not (marks or next_rows or moves or finished):
        return
    _driver_execute(
        session, _WRITE_MARKS_PG, _mark_params(marks, next_rows, moves, finished, done_at)
    )


def _mark_params(
    marks: list[dict[str, Any]],
    next_rows: list[dict[str, Any]],
    moves: list[tuple[str, str]],
    finished: list[tuple[str, str, str | None]],
    done_at: datetime,
) -> dict[str, Any]:
    """The mark statement's parameters: each column one array literal (``kit.db.pg_array``),
    not a Python list psycopg would dump element by element."""
    import orjson

    from liebian.kit.db import pg_array

    def col(rows: list[dict[str, Any]], key: str) -> str:
        return pg_array([r[key] for r in rows])

    return {
        "done_at": done_at,
        "m_id": col(marks, "b_id"),
        "m_status": col(marks, "b_status"),
        "m_result": col(marks, "b_result"),
        "m_detail": pg_array([None if m["b_detail"] is None
                              else orjson.dumps(m["b_detail"]).decode() for m in marks]),
        "m_next": col(marks, "b_next"),
        "n_id": col(next_rows, "id"),
        "n_ws": col(next_rows, "workspace_id"),
        "n_journey": col(next_rows, "journey_id"),
        "n_run": col(next_rows, "run_id"),
        "n_step": col(next_rows, "step_id"),
        "n_type": col(next_rows, "step_type"),
        "n_due": col(next_rows, "due_at"),
        "n_waiting": col(next_rows, "waiting_event"),
        "n_created": col(next_rows, "created_at"),
        "v_id": pg_array([r for r, _ in moves]),
        "v_step": pg_array([st for _, st in moves]),
        "f_id": pg_array([r for r, _, _ in finished]),
        "f_status": pg_array([st for _, st, _ in finished]),
        "f_reason": pg_array([why for _, _, why in finished]),
    }  # fmt: skip


# PostgreSQL, marks of steps with no database action: the ownership check and the writes in
# one statement, run autocommitted — the rows still claimed by the token are marked (the row
# lock the UPDATE takes and its re-check of the WHERE after waiting for one keep a takeover
# and this mark apart), and only their runs get a next row, a move or a finish.
_MARK_CLAIMED_PG = _pyformat(_marks_sql(claimed=True))


def mark_claimed(
    conn: Any,
    token: str,
    marks: list[dict[str, Any]],
    next_rows: list[dict[str, Any]],
    moves: list[tuple[str, str]],
    finished: list[tuple[str, str, str | None]],
    done_at: datetime,
) -> set[str]:
    """PostgreSQL, on an autocommit connection: mark the rows of ``marks`` still claimed by
    ``token`` and write what follows from those only; the ids marked."""
    if not marks:
        return set()
    params = _mark_params(marks, next_rows, moves, finished, done_at)
    params["token"] = token
    return {row[0] for row in _driver_execute(conn, _MARK_CLAIMED_PG, params)}


# Executors on PostgreSQL name their connection WORKER_APP + worker id and prefix their claim
# tokens with the worker id (decision 0043).
WORKER_APP = "liebian-journeys:"
WORKER_PREFIX = "jw"
_LIVE_WORKERS_PG = text(
    "SELECT substr(application_name, :skip) FROM pg_stat_activity"
    " WHERE application_name LIKE 'liebian-journeys:jw%'"
)
_RELEASE_DEAD_PG = text(
    """
UPDATE journey_step_executions SET lease_until = NULL
WHERE status = 'pending' AND due_at <= :now AND lease_until > :now
  AND claim_token LIKE 'jw%.%'
  AND split_part(claim_token, '.', 1) NOT IN (
      SELECT substr(application_name, :skip) FROM pg_stat_activity
      WHERE application_name LIKE 'liebian-journeys:jw%')
RETURNING id
"""
)
_RELEASE_OF_PG = text(
    """
UPDATE journey_step_executions SET lease_until = NULL
WHERE status = 'pending' AND due_at <= :now AND lease_until > :now
  AND claim_token LIKE 'jw%.%' AND split_part(claim_token, '.', 1) = ANY(:gone)
RETURNING id
"""
)


def live_workers(conn: Any) -> set[str]:
    """PostgreSQL: the worker ids some connection shows now."""
    return set(conn.execute(_LIVE_WORKERS_PG, {"skip": len(WORKER_APP) + 1}).scalars())


def release_dead_claims(conn: Any, now: datetime, gone: Sequence[str] | None = None) -> int:
    """PostgreSQL: free the lease of claimed rows whose worker id no connection shows any
    more — its process is gone (a SIGKILL closes its sockets and the server ends their
    backends) — or, given ``gone``, of those worker ids. The claim token is left: the
    holder, if it were somehow alive, still cannot mark a row another worker claimed after
    this. Claimed rows are due (``due_at <= now``): the read is a range of the (status,
    due_at) index — the due backlog, not every pending row, but the whole backlog, so this
    runs when a worker is seen to go, not on every look (``Executor.reap``). Tokens of
    another form (tests, older executors) keep their lease."""
    if gone is None:
        got = conn.execute(_RELEASE_DEAD_PG, {"now": now, "skip": len(WORKER_APP) + 1})
    else:
        got = conn.execute(_RELEASE_OF_PG, {"now": now, "gone": list(gone)})
    return len(got.fetchall())
