"""The rules every send respects, as plain functions of the facts (the service gathers them).

- opt-out per contact and channel ("*": every channel) — marketing only; transactional
  messages (an order notice, a code) still go.
- frequency cap per contact and channel: at most ``cap_count`` marketing messages in
  ``cap_hours`` → suppressed "frequency_cap", ``deferred_until`` = when a slot frees.
- monthly cap (WeCom: a customer receives a limited number of messages a month from one
  corporation) → suppressed "monthly_cap", ``deferred_until`` = the 1st of next month, local.
- quiet hours in the workspace time zone (default 21:00–09:00 Asia/Shanghai) → deferred
  "quiet_hours" until the window opens; marketing only.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from liebian.kit.errors import Invalid

DEFAULT_QUIET = ("21:00", "09:00")


@dataclass(frozen=True)
class Verdict:
    status: str  # "suppressed" | "deferred"
    reason: str
    deferred_until: datetime | None = None


def parse_hhmm(value: str, field: str) -> time:
    try:
        hours, minutes = value.split(":")
        return time(int(hours), int(minutes))
    except (ValueError, AttributeError):
        raise Invalid(f"{field} is a local time like 21:00", code="invalid_time",
                      details={"field": field}) from None  # fmt: skip


def quiet_until(now: datetime, tz: str, start: str, end: str) -> datetime | None:
    """When the quiet window that ``now`` falls in ends (UTC), or None outside it.

    ``start`` > ``end`` spans midnight (21:00–09:00); equal means no quiet hours."""
    zone = ZoneInfo(tz)
    local = now.astimezone(zone)
    begin, finish = parse_hhmm(start, "quiet_start"), parse_hhmm(end, "quiet_end")
    if begin == finish:
        return None
    clock = local.time().replace(tzinfo=None)
    if begin < finish:
        inside = begin <= clock < finish
        end_day = local.date()
    else:
        inside = clock >= begin or clock < finish
        end_day = local.date() + timedelta(days=1) if clock >= begin else local.date()
    if not inside:
        return None
    opens = datetime.combine(end_day, finish, tzinfo=zone)
    return opens.astimezone(UTC)


def month_bounds(now: datetime, tz: str) -> tuple[datetime, datetime]:
    """The calendar month of ``now`` in ``tz``: [start, next start), both UTC."""
    zone = ZoneInfo(tz)
    local = now.astimezone(zone)
    start = datetime(local.year, local.month, 1, tzinfo=zone)
    following = datetime(local.year + (local.month == 12), local.month % 12 + 1, 1, tzinfo=zone)
    return start.astimezone(UTC), following.astimezone(UTC)


def judge(
    *,
    category: str,
    now: datetime,
    opted_out: bool,
    has_address: bool,
    cap_count: int | None,
    cap_window_sends: list[datetime],
    cap_hours: int,
    monthly_cap: int | None,
    month_sends: int,
    month_end: datetime | None,
    quiet: datetime | None,
) -> Verdict | None:
    """The first rule that stops a send, in this order: no address, opted out, monthly cap,
    frequency cap, quiet hours. None: send now."""
    if not has_address:
        return Verdict("suppressed", "no_address")
    marketing = category == "marketing"
    if marketing and opted_out:
        return Verdict("suppressed", "opted_out")
    if monthly_cap is not None and month_sends >= monthly_cap:
        return Verdict("suppressed", "monthly_cap", month_end)
    if marketing and cap_count is not None and len(cap_window_sends) >= cap_count:
        oldest = sorted(cap_window_sends)[len(cap_window_sends) - cap_count]
        return Verdict("suppressed", "frequency_cap", oldest + timedelta(hours=cap_hours))
    if marketing and quiet is not None:
        return Verdict("deferred", "quiet_hours", quiet)
    return None
