"""Core statements compiled once per dialect and run straight on the DBAPI cursor.

For hot paths only (group joins and assist helps). ``Connection.execute`` costs ~0.1 ms of
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

from sqlalchemy import Column, Connection, Table, bindparam, insert
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
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
