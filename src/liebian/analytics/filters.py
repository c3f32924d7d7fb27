"""The small filter language of analytics queries.

``{field: value}`` means equality; ``{field: {op: value}}`` with op in eq, neq, in, gt, gte,
lt, lte, contains. A field is a column (``channel``, ``platform``, ``utm_source``, ...) or an
event property ``properties.<key>``. A string value compares with string properties, a
number with numeric ones, a bool with booleans. Everything is validated up front; unknown
fields and ops raise ``Invalid`` naming each of them; values are bound as parameters.
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from typing import Any

from liebian.analytics.sql import Sql
from liebian.events.store.base import QUERYABLE_COLUMNS
from liebian.kit.errors import Invalid

OPS = ("eq", "neq", "in", "gt", "gte", "lt", "lte", "contains")
_SQL_OPS = {"eq": "=", "neq": "<>", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
_PROP = re.compile(r"^properties\.([\w\-]{1,64})$")
_BOOL_COLUMNS = frozenset({"is_bot", "is_qr"})

Where = dict[str, Any]
# Bounds that keep one query's SQL small: a filter this large is a mistake, not an analysis.
MAX_WHERE_FIELDS = 50
MAX_IN_VALUES = 1_000


def check_field(field: str) -> str | None:
    """Return an error text for a field that cannot be queried, else None."""
    if field in QUERYABLE_COLUMNS or _PROP.match(field):
        return None
    return field


def validate_fields(fields: list[str], what: str = "field") -> None:
    bad = [f for f in fields if check_field(f) is not None]
    if bad:
        raise Invalid(
            f"unknown {what}(s): {', '.join(bad)}; use a column such as channel, platform,"
            " utm_source, link_id, campaign_id, or properties.<key>",
            code="unknown_field",
            details={"fields": bad},
        )


def _normalize(where: Where) -> list[tuple[str, str, Any]]:
    if len(where) > MAX_WHERE_FIELDS:
        raise Invalid(
            f"a where filter takes at most {MAX_WHERE_FIELDS} fields; got {len(where)}",
            details={"field": "where"},
        )
    validate_fields(list(where))
    out: list[tuple[str, str, Any]] = []
    bad_ops: list[str] = []
    for field, spec in where.items():
        if isinstance(spec, dict):
            for op, value in spec.items():
                if op not in OPS:
                    bad_ops.append(f"{field}.{op}")
                out.append((field, op, value))
        else:
            out.append((field, "eq", spec))
    if bad_ops:
        raise Invalid(
            f"unknown filter operator(s): {', '.join(bad_ops)}; use one of {', '.join(OPS)}",
            code="unknown_operator",
            details={"operators": bad_ops},
        )
    for field, op, value in out:
        _check_value(field, op, value)
    return out


def _check_value(field: str, op: str, value: Any) -> None:
    scalars = (str, int, float, bool)
    if isinstance(value, list) and len(value) > MAX_IN_VALUES:
        raise Invalid(
            f"filter {field}.in takes at most {MAX_IN_VALUES} values; got {len(value)}",
            details={"field": f"where.{field}"},
        )
    if op == "in":
        ok = isinstance(value, list) and value and all(isinstance(v, scalars) for v in value)
        if not ok:
            raise Invalid(f"filter {field}.in needs a non-empty list of values")
        if len({type(v) is str for v in value}) > 1:
            raise Invalid(f"filter {field}.in mixes text and numbers")
    elif op == "contains":
        if not isinstance(value, str):
            raise Invalid(f"filter {field}.contains needs a text value")
    elif not isinstance(value, scalars):
        raise Invalid(f"filter {field}.{op} needs a text, number or true/false value")
    for item in value if isinstance(value, list) else [value]:
        if isinstance(item, float) and not math.isfinite(item):
            raise Invalid(f"filter {field}.{op} needs a finite number, not {item}")
        if (
            field == "revenue"
            and op != "contains"
            and (isinstance(item, bool) or not isinstance(item, int))
        ):
            raise Invalid(
                f"filter revenue.{op} needs a whole number of minor units (分), got {item!r}",
                details={"field": f"where.{field}"},
            )


def _expr(sql: Sql, field: str, sample: Any, alias: str) -> tuple[str, bool]:
    """Column/property expression for a comparison with ``sample``; (expr, nullable)."""
    m = _PROP.match(field)
    if m:
        key = m.group(1)
        if isinstance(sample, bool):
            return sql.prop_bool(key, alias), True
        if isinstance(sample, int | float):
            return sql.prop_num(key, alias), True
        return sql.prop_str(key, alias), True
    return sql.col(field, alias), False


def _bind(sql: Sql, field: str, value: Any) -> str:
    if field == "ts":
        try:
            return sql.p(datetime.fromisoformat(str(value)))
        except ValueError as exc:
            raise Invalid(f"filter on ts needs an ISO 8601 time, got {value!r}") from exc
    if field in _BOOL_COLUMNS:
        return sql.p(bool(value))
    if field == "revenue":
        return sql.p(int(value))
    if field in QUERYABLE_COLUMNS:
        return sql.p(str(value))
    if isinstance(value, int | float) and not isinstance(value, bool):
        return sql.p(float(value))
    return sql.p(value)


def where_sql(sql: Sql, where: Where | None, alias: str = "e") -> str:
    """SQL condition for ``where`` (``1 = 1`` when empty)."""
    if not where:
        return "1 = 1"
    parts: list[str] = []
    for field, op, value in _normalize(where):
        sample = value[0] if op == "in" else value
        expr, nullable = _expr(sql, field, sample, alias)
        if op == "in":
            parts.append(f"{expr} IN ({', '.join(_bind(sql, field, v) for v in value)})")
        elif op == "contains":
            needle = sql.p(str(value))
            parts.append(
                f"position({expr}, {needle}) > 0" if sql.ch else f"contains({expr}, {needle})"
            )
        elif op == "neq" and nullable:
            # A missing property differs from any value, alike in both engines.
            parts.append(f"({expr} IS NULL OR {expr} <> {_bind(sql, field, value)})")
        else:
            parts.append(f"{expr} {_SQL_OPS[op]} {_bind(sql, field, value)}")
    return " AND ".join(f"({p})" for p in parts)


def breakdown_expr(sql: Sql, field: str, alias: str = "e") -> str:
    """Text value of a breakdown field ('' when absent)."""
    validate_fields([field], "breakdown field")
    m = _PROP.match(field)
    if m:
        return f"coalesce({sql.prop_text(m.group(1), alias)}, '')"
    if field in _BOOL_COLUMNS:
        return (
            f"if({alias}.{field}, 'true', 'false')"
            if sql.ch
            else (f"CASE WHEN {alias}.{field} THEN 'true' ELSE 'false' END")
        )
    if field in ("ts", "received_at", "revenue"):
        return f"toString({alias}.{field})" if sql.ch else f"CAST({alias}.{field} AS VARCHAR)"
    return sql.col(field, alias)
