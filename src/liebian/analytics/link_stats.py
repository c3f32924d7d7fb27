"""Click statistics of one link (issue 2): humans, bots, scans, visitors, platforms, days."""

from __future__ import annotations

from liebian.analytics.schemas import DEFAULT_TZ, LinkStats
from liebian.analytics.sql import Sql, check_tz
from liebian.events.store.base import EventStore


def link_stats(
    store: EventStore, workspace_id: str, link_id: str, tz: str = DEFAULT_TZ
) -> LinkStats:
    check_tz(tz)
    sql = Sql(store)
    ws, link = sql.p(workspace_id), sql.p(link_id)
    day = sql.date_str(sql.local_date("e.ts", tz))
    base = (
        f"SELECT {sql.col('platform')} AS platform, e.is_bot AS is_bot, e.is_qr AS is_qr,"
        f" {sql.col('visitor_id')} AS visitor, {day} AS d FROM {sql.events} e"
        f" WHERE e.workspace_id = {ws} AND e.link_id = {link} AND e.event = 'click'"
    )
    # One scan, grouped by (platform, day, bot); totals and the distinct visitors beside it.
    rows = sql.run(
        f"SELECT platform, d, is_bot, count(*), {sql.count_if('is_qr')} FROM ({base}) t"
        " GROUP BY platform, d, is_bot"
    )
    visitors = sql.run(
        f"SELECT {sql.uniq_if('visitor', 'NOT is_bot AND visitor <> ' + sql.p(''))} FROM ({base}) t"
    )[0][0]
    clicks = bots = scans = 0
    by_platform: dict[str, int] = {}
    by_day: dict[str, int] = {}
    for platform, d, is_bot, n, qr in rows:
        n = int(n)
        if bool(is_bot):
            # Apart from by_platform: the breakdown adds up to ``clicks`` (humans only).
            bots += n
            continue
        clicks += n
        scans += int(qr)
        key = str(platform) or "unknown"
        by_platform[key] = by_platform.get(key, 0) + n
        by_day[str(d)] = by_day.get(str(d), 0) + n
    return LinkStats(
        clicks=clicks,
        bot_clicks=bots,
        qr_scans=scans,
        unique_visitors=int(visitors or 0),
        by_platform=dict(sorted(by_platform.items())),
        by_day=dict(sorted(by_day.items())),
    )
