"""SQL building shared by every analytics query, for both dialects.

Each query is written once; the few spots where DuckDB and ClickHouse differ go through
``Sql`` methods. Every value travels as a bound parameter (``$p1`` for DuckDB, ``{p1:Type}``
for ClickHouse); only our own identifiers and constants are written into the text.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from liebian.events.store.base import STRING_COLUMNS, EventStore
from liebian.kit.errors import Invalid


def check_tz(tz: str) -> str:
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise Invalid(f"unknown time zone {tz!r}; use an IANA name such as Asia/Shanghai") from exc
    return tz


def to_utc(ts: datetime) -> datetime:
    """Naive datetimes in a query are UTC; aware ones are converted."""
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


class Sql:
    def __init__(self, store: EventStore) -> None:
        self.store = store
        self.ch = store.dialect == "clickhouse"
        self.params: dict[str, Any] = {}

    # -- parameters ----------------------------------------------------------------------

    def p(self, value: Any, ch_type: str | None = None) -> str:
        name = f"p{len(self.params)}"
        if isinstance(value, datetime):
            utc = to_utc(value)
            if self.ch:
                value = utc.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
                ch_type = ch_type or "DateTime64(3, 'UTC')"
            else:
                value = utc.replace(tzinfo=None)
        self.params[name] = value
        if not self.ch:
            return f"${name}"
        if ch_type is None:
            if isinstance(value, bool):
                ch_type = "Bool"
            elif isinstance(value, int):
                ch_type = "Int64"
            elif isinstance(value, float):
                ch_type = "Float64"
            else:
                ch_type = "String"
        return f"{{{name}:{ch_type}}}"

    def run(self, sql: str) -> list[tuple[Any, ...]]:
        return self.store.query(sql, self.params)

    # -- relations -----------------------------------------------------------------------

    @property
    def events(self) -> str:
        return self.store.events_table

    def has_aliases(self, ws: str) -> bool:
        """Whether the workspace has any alias at all: without one the alias join is a no-op
        that still costs a hash probe per event, so big queries skip it."""
        aliases = self.store.aliases_source()
        rows = self.store.query(
            f"SELECT 1 FROM {aliases} WHERE workspace_id = {'{ws:String}' if self.ch else '$ws'}"
            " LIMIT 1",
            {"ws": ws},
        )
        return bool(rows)

    def events_with_person(
        self, ws: str, select: str, where: str = "", *, aliases: bool = True, source: str = ""
    ) -> str:
        """SELECT over one workspace's events ``e`` joined to its aliases ``a``; ``select``
        may use ``person``'s expression through ``self.person()``. With ``aliases=False``
        (the caller checked ``has_aliases``) the join is left out and ``self.person(False)``
        must be used. ``source`` replaces the events table by another relation with
        workspace_id, visitor_id and (DuckDB) person_key columns."""
        ws_p = self.p(ws)
        rel = source or self.events
        if not aliases:
            return f"SELECT {select} FROM {rel} e WHERE e.workspace_id = {ws_p}" + (
                f" AND ({where})" if where else ""
            )
        alias_rel = self.store.aliases_source()
        return (
            f"SELECT {select}"
            f" FROM {rel} e LEFT JOIN (SELECT visitor_id, user_id FROM {alias_rel}"
            f" WHERE workspace_id = {ws_p}) a ON a.visitor_id = e.visitor_id"
            f" WHERE e.workspace_id = {ws_p}" + (f" AND ({where})" if where else "")
        )

    def person(self, aliases: bool = True) -> str:
        if not aliases:
            return "coalesce(nullif(e.user_id, ''), e.visitor_id)"
        return "coalesce(nullif(a.user_id, ''), nullif(e.user_id, ''), e.visitor_id)"

    def person_key(self, aliases: bool = True) -> str:
        """The person as a 64-bit hash: joins and GROUP BYs on an integer instead of text.
        Two people would merge only on a 64-bit collision (about 3e-8 for a million people).

        DuckDB stores the pre-alias key with each event (``events.person_key``, the same hash
        of the same text), so only events whose visitor has an alias hash at query time."""
        if self.ch:
            return f"cityHash64({self.person(aliases)})"
        if not aliases:
            return "e.person_key"
        return "CASE WHEN coalesce(a.user_id, '') = '' THEN e.person_key ELSE hash(a.user_id) END"

    def materialized(self) -> str:
        """CTE keyword so DuckDB computes a CTE read several times only once."""
        return "" if self.ch else "MATERIALIZED "

    # -- expressions ---------------------------------------------------------------------

    def col(self, name: str, alias: str = "e") -> str:
        """A column with NULL and '' unified (ClickHouse strings are never NULL)."""
        if name in STRING_COLUMNS and not self.ch:
            return f"coalesce({alias}.{name}, '')"
        if name == "revenue" and not self.ch:
            return f"coalesce({alias}.revenue, 0)"
        return f"{alias}.{name}"

    def ms(self, expr: str) -> str:
        return f"toUnixTimestamp64Milli({expr})" if self.ch else f"epoch_ms({expr})"

    def local_date(self, expr: str, tz: str) -> str:
        tz_p = self.p(tz)
        if self.ch:
            return f"toDate({expr}, {tz_p})"
        return f"CAST(timezone({tz_p}, {expr} AT TIME ZONE 'UTC') AS DATE)"

    def week_start(self, date_expr: str) -> str:
        # ISO weeks start on Monday in both engines' functions used here.
        return (
            f"toMonday({date_expr})"
            if self.ch
            else f"CAST(date_trunc('week', {date_expr}) AS DATE)"
        )

    def date_str(self, date_expr: str) -> str:
        return f"toString({date_expr})" if self.ch else f"strftime({date_expr}, '%Y-%m-%d')"

    def day_diff(self, a: str, b: str) -> str:
        return f"dateDiff('day', {a}, {b})" if self.ch else f"date_diff('day', {a}, {b})"

    def local_bucket(self, expr: str, tz: str, interval: str) -> str:
        """Start of the hour/day/week/month in ``tz`` as 'YYYY-MM-DD HH:MM:SS' local time."""
        if interval == "hour":
            tz_p = self.p(tz)
            if self.ch:
                return f"formatDateTime(toStartOfHour({expr}, {tz_p}), '%Y-%m-%d %H:00:00', {tz_p})"
            return (
                f"strftime(date_trunc('hour', timezone({tz_p}, {expr} AT TIME ZONE 'UTC')),"
                " '%Y-%m-%d %H:00:00')"
            )
        day = self.local_date(expr, tz)
        if interval == "week":
            day = self.week_start(day)
        elif interval == "month":
            day = (
                f"toStartOfMonth({day})" if self.ch else f"CAST(date_trunc('month', {day}) AS DATE)"
            )
        return f"concat({self.date_str(day)}, ' 00:00:00')"

    def count_if(self, cond: str) -> str:
        return f"countIf({cond})" if self.ch else f"count_if({cond})"

    def arg_min(self, arg: str, key: str) -> str:
        return f"argMin({arg}, {key})" if self.ch else f"arg_min({arg}, {key})"

    def arg_min_if(self, arg: str, key: str, cond: str) -> str:
        if self.ch:
            return f"argMinIf({arg}, {key}, {cond})"
        return f"arg_min({arg}, {key}) FILTER (WHERE {cond})"

    def median(self, expr: str) -> str:
        # Both are linear interpolation between the two middle values, so they agree.
        return f"quantileExactInclusive(0.5)({expr})" if self.ch else f"quantile_cont({expr}, 0.5)"

    def uniq(self, expr: str) -> str:
        return f"uniqExact({expr})" if self.ch else f"count(DISTINCT {expr})"

    def uniq_if(self, expr: str, cond: str) -> str:
        if self.ch:
            return f"uniqExactIf({expr}, {cond})"
        return f"count(DISTINCT {expr}) FILTER (WHERE {cond})"

    def sum_if(self, expr: str, cond: str) -> str:
        return (
            f"sumIf({expr}, {cond})"
            if self.ch
            else f"coalesce(sum({expr}) FILTER (WHERE {cond}), 0)"
        )

    def in_list(self, expr: str, values: list[Any]) -> str:
        return f"{expr} IN ({', '.join(self.p(v) for v in values)})"

    def json_path(self, key: str) -> str:
        return self.p(key) if self.ch else self.p(f'$."{key}"')

    def prop_str(self, key: str, alias: str = "e") -> str:
        """A string-valued property (NULL if missing or not a string)."""
        k = self.json_path(key)
        if self.ch:
            return f"JSONExtract({alias}.properties, {k}, 'Nullable(String)')"
        return (
            f"CASE WHEN json_type({alias}.properties, {k}) = 'VARCHAR'"
            f" THEN json_extract_string({alias}.properties, {k}) END"
        )

    def prop_num(self, key: str, alias: str = "e") -> str:
        k = self.json_path(key)
        if self.ch:
            return f"JSONExtract({alias}.properties, {k}, 'Nullable(Float64)')"
        return (
            f"CASE WHEN json_type({alias}.properties, {k}) IN ('BIGINT', 'UBIGINT', 'DOUBLE')"
            f" THEN CAST(json_extract({alias}.properties, {k}) AS DOUBLE) END"
        )

    def prop_bool(self, key: str, alias: str = "e") -> str:
        k = self.json_path(key)
        if self.ch:
            return f"JSONExtract({alias}.properties, {k}, 'Nullable(Bool)')"
        return (
            f"CASE WHEN json_type({alias}.properties, {k}) = 'BOOLEAN'"
            f" THEN CAST(json_extract({alias}.properties, {k}) AS BOOLEAN) END"
        )

    def prop_text(self, key: str, alias: str = "e") -> str:
        """Any property as text, for breakdowns: strings bare, numbers as written."""
        k = self.json_path(key)
        if self.ch:
            return (
                f"if(JSONType({alias}.properties, {k}) = 'String',"
                f" JSONExtractString({alias}.properties, {k}),"
                f" JSONExtractRaw({alias}.properties, {k}))"
            )
        return f"coalesce(json_extract_string({alias}.properties, {k}), '')"
