"""The seeds' named metrics over [from, to), people resolved through aliases, bots excluded.

- 入群转化率 group_join_rate = people who joined a group / people who clicked
- 次日留存 day1_retention, 7日留存 day7_retention = share of people whose first ``signup`` in
  range was followed by any event on local day +1 / day +7
- 邀请率 invite_rate = people who invited / active people
- 分享率 share_rate = people who shared / active people
- 转化率 conversion_rate = people who purchased / people who visited (visit or click)
- GMV = sum of purchase revenue; 客单价 aov = GMV / orders; ARPU = GMV / active people
(money in minor units, 分). Event names are configurable through ``MetricEvents``.
"""

from __future__ import annotations

from liebian.analytics.common import ratio
from liebian.analytics.schemas import MetricsQuery, MetricsResult
from liebian.analytics.sql import Sql, check_tz
from liebian.events.store.base import EventStore


def _rate(num: int, den: int) -> float | None:
    return ratio(num, den) if den else None


def metrics(store: EventStore, workspace_id: str, q: MetricsQuery) -> MetricsResult:
    tz = check_tz(q.tz)
    sql = Sql(store)
    ev = q.events
    rng = f"e.ts >= {sql.p(q.from_)} AND e.ts < {sql.p(q.to)} AND NOT e.is_bot"
    sel = (
        f"{sql.person()} AS person, e.event AS event, {sql.col('revenue')} AS rev,"
        f" e.ts AS ts, {sql.local_date('e.ts', tz)} AS d"
    )
    acts = sql.events_with_person(workspace_id, sel, rng)

    def people(event: str) -> str:
        return sql.uniq_if("person", f"event = {sql.p(event)}")

    purchase = sql.p(ev.purchase)
    head = sql.run(
        f"SELECT {sql.uniq('person')}, {people(ev.click)}, {people(ev.join_group)},"
        f" {people(ev.invite)}, {people(ev.share)}, {people(ev.purchase)},"
        f" {sql.uniq_if('person', f'event IN ({sql.p(ev.visit)}, {sql.p(ev.click)})')},"
        f" {sql.count_if(f'event = {purchase}')}, {sql.sum_if('rev', f'event = {purchase}')}"
        f" FROM ({acts}) t"
    )[0]
    active, clickers, joiners, inviters, sharers, buyers, visitors, orders, gmv = (
        int(v or 0) for v in head
    )
    sq = Sql(store)
    first_sel = f"{sq.person()} AS person, min({sq.local_date('e.ts', tz)}) AS d0"
    first_where = f"e.event = {sq.p(ev.signup)} AND e.ts >= {sq.p(q.from_)} AND e.ts < {sq.p(q.to)}"
    any_sel = f"DISTINCT {sq.person()} AS person, {sq.local_date('e.ts', tz)} AS d"
    firsts = f"{sq.events_with_person(workspace_id, first_sel, first_where)} GROUP BY person"
    days = sq.events_with_person(workspace_id, any_sel, "NOT e.is_bot")
    diff = sq.day_diff("f.d0", "a.d")
    ret = sq.run(
        f"SELECT count(DISTINCT f.person),"
        f" {sq.uniq_if('a.person', f'{diff} = 1')}, {sq.uniq_if('a.person', f'{diff} = 7')}"
        f" FROM ({firsts}) f LEFT JOIN ({days}) a ON a.person = f.person"
    )[0]
    cohort, d1, d7 = (int(v or 0) for v in ret)
    return MetricsResult(
        active_users=active,
        group_join_rate=_rate(joiners, clickers),
        day1_retention=_rate(d1, cohort),
        day7_retention=_rate(d7, cohort),
        invite_rate=_rate(inviters, active),
        share_rate=_rate(sharers, active),
        conversion_rate=_rate(buyers, visitors),
        orders=orders,
        gmv=gmv,
        aov=round(gmv / orders, 2) if orders else None,
        arpu=round(gmv / active, 2) if active else None,
    )
