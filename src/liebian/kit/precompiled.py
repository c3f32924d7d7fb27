"""Core statements compiled once per dialect and run straight on the DBAPI cursor.

For hot paths only (group joins and assist helps; ``executemany`` for the event hooks'
batches). ``Connection.execute`` costs ~0.1 ms of
Python per statement here — cache-key generation, parameter construction, the execution
context, the result wrapper — several times what SQLite takes to run a point query. A
``Precompiled`` does that work once: it compiles its statement for each dialect it meets and
remembers the SQL text, the order of its parameters and the type conversions of its
parameters and result columns (the same SQLAlchemy type processors ``execute`` would apply,
so ``UTCDateTime`` and JSON columns read and write exactly as elsewhere). Each call is then
one ``cursor.execute`` in the connection's current transaction.

What this gives up, and why that is fine where it is used: no ORM (no identity map, no
autoflush — callers flush first when they have pending objects), no SQL echo or cursor
events, no Python-side column defaults (inserts name every column they set). DBAPI errors
are re-raised as SQLAlchemy's (``IntegrityError`` …), as ``execute`` would.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Column, Connection, Table, bindparam, func, insert, select
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session
from sqlalchemy.sql.expression import ClauseElement

Processor = Callable[[Any], Any]


@dataclass(frozen=True, slots=True)
class _Compiled:
    sql: str
    positional: tuple[str, ...] | None  # parameter names in order; None: the driver takes names
    literals: dict[str, Any]  # values bound in the statement itself (``status == "open"``)
    bind_processors: tuple[tuple[str, Processor], ...]
    row: Any  # a namedtuple type for result rows (attribute access, ``_asdict()``)
    result_processors: tuple[Processor | None, ...] | None  # None: nothing to convert
    dbapi_error: type[Exception]


class Rows:
    """What a ``Precompiled`` returns: the rows (fetched at once: hot-path queries are small)
    and the affected row count."""

    __slots__ = ("rowcount", "rows")

    def __init__(self, rows: list[Any], rowcount: int) -> None:
        self.rows = rows
        self.rowcount = rowcount

    def first(self) -> Any:
        return self.rows[0] if self.rows else None

    def one(self) -> Any:
        if len(self.rows) != 1:
            raise LookupError(f"expected one row, got {len(self.rows)}")
        return self.rows[0]

    def scalar(self) -> Any:
        return self.rows[0][0] if self.rows else None


class Precompiled:
    def __init__(self, statement: ClauseElement) -> None:
        self.statement = statement
        self._compiled: dict[str, _Compiled] = {}

    def execute(self, conn: Connection, params: Mapping[str, Any]) -> Rows:
        dialect = conn.dialect
        compiled = self._compiled.get(dialect.name)
        if compiled is None:
            compiled = self._compiled[dialect.name] = self._compile(dialect)
        values = {**compiled.literals, **params}
        for name, process in compiled.bind_processors:
            values[name] = process(values[name])
        args: Any = (
            values if compiled.positional is None else [values[n] for n in compiled.positional]
        )
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(compiled.sql, args)
            fetched = cursor.fetchall() if cursor.description is not None else []
            rowcount = cursor.rowcount
        except compiled.dbapi_error as exc:
            raise DBAPIError.instance(
                compiled.sql, args, exc, compiled.dbapi_error, dialect=dialect
            ) from exc
        finally:
            cursor.close()
        make, processors = compiled.row._make, compiled.result_processors
        if processors is None:
            return Rows([make(r) for r in fetched], rowcount)
        rows = [
            make([v if p is None else p(v) for p, v in zip(processors, r, strict=True)])
            for r in fetched
        ]
        return Rows(rows, rowcount)

    def _compile(self, dialect: Dialect) -> _Compiled:
        compiled: Any = self.statement.compile(dialect=dialect)
        # bind_names: each parameter object of the statement → the name it is rendered as.
        bind_names: dict[Any, str] = compiled.bind_names
        bind_processors = []
        literals = {}
        for bind, name in bind_names.items():
            process = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if process is not None:
                bind_processors.append((name, process))
            if not bind.required:
                literals[name] = bind.value
        # Columns an INSERT does not name but that have a scalar Python default (``default=0``)
        # are rendered as parameters SQLAlchemy would fill in at execution: fill them here, so
        # a column added later with a default does not turn into NULL on the hot path.
        for column in getattr(compiled, "insert_prefetch", ()) or ():
            default = column.default
            if default is not None and getattr(default, "is_scalar", False):
                literals[column.key] = default.arg
        columns: Sequence[Any] = list(getattr(self.statement, "exported_columns", ()))
        result_processors = tuple(
            c.type.dialect_impl(dialect).result_processor(dialect, None) for c in columns
        )
        row = namedtuple("Row", [c.key for c in columns], rename=True)  # type: ignore[misc]
        dbapi: Any = dialect.loaded_dbapi
        return _Compiled(
            sql=compiled.string,
            positional=tuple(compiled.positiontup) if compiled.positiontup else None,
            literals=literals,
            bind_processors=tuple(bind_processors),
            row=row,
            result_processors=(
                result_processors if any(p is not None for p in result_processors) else None
            ),
            dbapi_error=dbapi.Error,
        )


def insert_columns(table: Table, columns: Sequence[str]) -> Precompiled:
    """``INSERT INTO table (columns…) VALUES (…)`` with one parameter per column, named after
    it and typed like it."""
    cols: list[Column[Any]] = [table.c[name] for name in columns]
    return Precompiled(insert(table).values({c.key: bindparam(c.key, type_=c.type) for c in cols}))


# -- batches: bulk writes and reads -----------------------------------------------------------
#
# The event hooks worker (events/hooks.py) writes and reads thousands of rows per transaction,
# in the serving process, beside request threads that hold the GIL most of the time. Two costs
# dominated it besides SQL itself (issue 10):
# - SQLAlchemy's per-row parameter building (``construct_params`` and the bind processors);
# - on SQLite, one GIL release per row: the sqlite3 module steps each row of a result, and
#   each parameter set of an ``executemany``, with the GIL released, and under request load
#   taking it back waits for a request thread's turn (a "convoy"): in process, ~1,000 such
#   waits for 6,000 conversions made the worker's wall time ~4× its CPU.
# So on SQLite an INSERT goes out as multi-row VALUES, an UPDATE by key as one
# ``UPDATE … FROM (VALUES …)``, and a SELECT's rows come back as one JSON row; on PostgreSQL
# (psycopg pipelines an executemany; a result is fetched at once) the plain forms are kept.

_MAX_SQLITE_PARAMS = 30_000  # SQLite allows 32,766 since 3.32
_ROWS_PER_STATEMENT = 500


@dataclass(frozen=True, slots=True)
class _ManyPlan:
    sql: str
    # Per placeholder, in order (positional paramstyles) or by name: the row key it takes
    # (None: a constant bound in the statement), its constant, and the type's bind processor.
    slots: tuple[tuple[str, str | None, Any, Callable[[Any], Any] | None], ...]
    positional: bool
    # SQLite INSERT: the statement's text around its one VALUES group, to repeat the group.
    values_split: tuple[str, str, str] | None = None
    # Columns with a computed Python-side default the rows do not give (``default=utcnow``):
    # called for each row (the wrapped default takes an execution context; none here).
    computed: tuple[tuple[str, Callable[[Any], Any]], ...] = ()


_PLANS: dict[tuple[int, str, tuple[str, ...]], tuple[Any, _ManyPlan]] = {}


def _plan(stmt: Any, dialect: Dialect, keys: tuple[str, ...]) -> _ManyPlan:
    cache_key = (id(stmt), dialect.name, keys)
    held = _PLANS.get(cache_key)
    if held is not None and held[0] is stmt:
        return held[1]
    compiled = stmt.compile(dialect=dialect, column_keys=list(keys))
    by_name = {name: bind for bind, name in compiled.bind_names.items()}
    order = compiled.positiontup or list(by_name)
    # Columns the rows do not name but that have a Python-side default (``default=0``,
    # ``default=utcnow``): SQLAlchemy fills them in at execution, so must this.
    defaults = {
        c.key: c.default
        for c in (*(compiled.insert_prefetch or ()), *(compiled.update_prefetch or ()))
        if c.default is not None
    }
    slots = []
    computed: list[tuple[str, Callable[[Any], Any]]] = []
    for name in order:
        bind = by_name[name]
        processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
        if bind.key in keys:
            slots.append((name, bind.key, None, processor))
        elif bind.key in defaults and not defaults[bind.key].is_scalar:
            computed.append((bind.key, defaults[bind.key].arg))  # per row, as SQLAlchemy does
            slots.append((name, bind.key, None, processor))
        elif bind.key in defaults:
            value = defaults[bind.key].arg
            slots.append((name, None, processor(value) if processor else value, None))
        else:  # a value written into the statement (``kind == "visitor_id"``)
            value = bind.effective_value
            slots.append((name, None, processor(value) if processor else value, None))
    sql: str = compiled.string
    split = None
    if dialect.name == "sqlite" and getattr(stmt, "is_insert", False):
        head, sep, rest = sql.partition(" VALUES (")
        group, close, tail = rest.partition(")")
        if sep and close and group == ", ".join("?" * len(slots)):
            split = (head + " VALUES ", "(" + group + ")", tail)
    plan = _ManyPlan(sql, tuple(slots), compiled.positiontup is not None, split, tuple(computed))
    _PLANS[cache_key] = (stmt, plan)  # the statement is kept: its id stays its own
    return plan


def executemany(session: Session, stmt: Any, rows: Sequence[Mapping[str, Any]]) -> int:
    """Run a Core INSERT/UPDATE for each row: ``session.execute(stmt, rows)``, without
    SQLAlchemy's per-row parameter building, and on SQLite an INSERT as multi-row VALUES
    (see above).

    The statement is compiled once per dialect and set of keys; each value goes through its
    type's bind processor only when it has one (``UTCDateTime`` on SQLite). Every row must
    have the first row's keys. No RETURNING; pending ORM changes are flushed first, as an
    ORM-enabled ``execute`` would. Returns the rows written as the driver counts them (-1
    when it does not say)."""
    if not rows:
        return 0
    session.flush()
    connection = session.connection()
    plan = _plan(stmt, connection.dialect, tuple(rows[0]))
    slots = plan.slots
    if plan.computed:
        rows = [{**row, **{key: make(None) for key, make in plan.computed}} for row in rows]
    if plan.positional:
        params: list[Any] = [
            tuple(
                constant if key is None else (proc(row[key]) if proc else row[key])
                for _, key, constant, proc in slots
            )
            for row in rows
        ]
    else:
        params = [
            {
                name: constant if key is None else (proc(row[key]) if proc else row[key])
                for name, key, constant, proc in slots
            }
            for row in rows
        ]
    if plan.values_split is None or len(params) == 1:
        return int(connection.exec_driver_sql(plan.sql, params).rowcount)
    head, group, tail = plan.values_split
    per = max(1, min(_ROWS_PER_STATEMENT, _MAX_SQLITE_PARAMS // max(1, len(slots))))
    written = 0
    for start in range(0, len(params), per):
        chunk = params[start : start + per]
        sql = head + ", ".join([group] * len(chunk)) + tail
        written += connection.exec_driver_sql(sql, tuple(v for row in chunk for v in row)).rowcount
    return written


_UPDATES: dict[tuple[str, str, tuple[str, ...]], Any] = {}


def update_by_key(
    session: Session, table: Table, key: str, rows: Sequence[Mapping[str, Any]]
) -> None:
    """``UPDATE table SET <the rows' other keys> WHERE <key column> = row["b_key"]`` for each
    row (``b_key`` holds the key's value). On SQLite one statement per 500 rows joins the new
    values as a VALUES list (``UPDATE … FROM``, SQLite ≥ 3.33); elsewhere ``executemany``."""
    if not rows:
        return
    columns = tuple(k for k in rows[0] if k != "b_key")
    session.flush()
    connection = session.connection()
    dialect = connection.dialect
    if dialect.name != "sqlite":
        cache_key = (table.name, key, columns)
        stmt = _UPDATES.get(cache_key)
        if stmt is None:
            stmt = _UPDATES[cache_key] = (
                table.update()
                .where(table.c[key] == bindparam("b_key"))
                .values({c: bindparam(c, type_=table.c[c].type) for c in columns})
            )
        executemany(session, stmt, rows)
        return
    quote = dialect.identifier_preparer.quote
    processors = [table.c[c].type.dialect_impl(dialect).bind_processor(dialect) for c in columns]
    names = ["b_key", *(f"v{i}" for i in range(len(columns)))]
    sets = ", ".join(f"{quote(c)} = v.v{i}" for i, c in enumerate(columns))
    per = max(1, min(_ROWS_PER_STATEMENT, _MAX_SQLITE_PARAMS // (len(columns) + 1)))
    group = "(" + ", ".join("?" * (len(columns) + 1)) + ")"
    for start in range(0, len(rows), per):
        chunk = rows[start : start + per]
        params: list[Any] = []
        for row in chunk:
            params.append(row["b_key"])
            for c, proc in zip(columns, processors, strict=True):
                params.append(proc(row[c]) if proc else row[c])
        sql = (
            f"WITH v({', '.join(names)}) AS (VALUES {', '.join([group] * len(chunk))})"
            f" UPDATE {quote(table.name)} SET {sets} FROM v"
            f" WHERE {quote(table.name)}.{quote(key)} = v.b_key"
        )
        connection.exec_driver_sql(sql, tuple(params))


def fetch_all(session: Session, stmt: Any) -> list[tuple[Any, ...]]:
    """The rows of a SELECT as tuples, converted as ``session.execute`` converts them. On
    SQLite they come back as one row (``json_group_array``), so the GIL is released once
    rather than once per row (see above)."""
    connection = session.connection()
    dialect = connection.dialect
    if dialect.name != "sqlite":
        return [tuple(r) for r in session.execute(stmt)]
    sub = stmt.subquery()
    packed = session.execute(select(func.json_group_array(func.json_array(*sub.c)))).scalar()
    if not packed:
        return []
    processors = [
        c.type.dialect_impl(dialect).result_processor(dialect, None) for c in stmt.selected_columns
    ]
    rows = orjson.loads(packed)
    # Only the columns that have a processor, each row's list changed in place: a generator
    # over every column of every row cost ~3 µs a 12-column row (the hooks worker's contacts).
    active = [(i, p) for i, p in enumerate(processors) if p is not None]
    for row in rows if active else ():
        for i, process in active:
            value = row[i]
            if value is not None:
                row[i] = process(value)
    return [tuple(r) for r in rows]
