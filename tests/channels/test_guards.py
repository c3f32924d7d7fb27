"""Guards as plain functions: quiet hours across midnight and in other zones, month bounds,
the order of the rules and when a cap frees a slot."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from liebian.channels.guards import judge, month_bounds, quiet_until
from liebian.kit.errors import Invalid


def sh(hour: int, minute: int = 0, day: int = 2) -> datetime:
    """A Shanghai local time (UTC+8) as UTC."""
    return datetime(2026, 12, day, hour, minute, tzinfo=UTC) - timedelta(hours=8)


def test_quiet_hours_default_window_spans_midnight() -> None:
    tz = "Asia/Shanghai"
    assert quiet_until(sh(20, 59), tz, "21:00", "09:00") is None
    assert quiet_until(sh(21, 0), tz, "21:00", "09:00") == sh(9, 0, day=3)
    assert quiet_until(sh(23, 30), tz, "21:00", "09:00") == sh(9, 0, day=3)
    assert quiet_until(sh(3, 0), tz, "21:00", "09:00") == sh(9, 0)
    assert quiet_until(sh(9, 0), tz, "21:00", "09:00") is None
    # A window inside one day, and "no quiet hours" (start == end).
    assert quiet_until(sh(13, 0), tz, "12:00", "14:00") == sh(14, 0)
    assert quiet_until(sh(3, 0), tz, "00:00", "00:00") is None
    # Another zone: 22:00 in New York is quiet there, not in Shanghai's terms.
    ny = datetime(2026, 12, 3, 3, 0, tzinfo=UTC)  # 22:00 EST on Dec 2
    assert quiet_until(ny, "America/New_York", "21:00", "09:00") == datetime(
        2026, 12, 3, 14, 0, tzinfo=UTC
    )
    with pytest.raises(Invalid):
        quiet_until(ny, tz, "9pm", "09:00")


def test_month_bounds_in_the_workspace_zone() -> None:
    # 23:30 on Jan 31 in Shanghai is still January there (15:30 UTC).
    start, end = month_bounds(datetime(2026, 1, 31, 15, 30, tzinfo=UTC), "Asia/Shanghai")
    assert start == datetime(2025, 12, 31, 16, 0, tzinfo=UTC)
    assert end == datetime(2026, 1, 31, 16, 0, tzinfo=UTC)
    _, dec_end = month_bounds(datetime(2026, 12, 15, tzinfo=UTC), "Asia/Shanghai")
    assert dec_end == datetime(2026, 12, 31, 16, 0, tzinfo=UTC)


def test_rules_in_order() -> None:
    now = sh(12)
    base = dict(category="marketing", now=now, opted_out=False, has_address=True,
                cap_count=None, cap_window_sends=[], cap_hours=24, monthly_cap=None,
                month_sends=0, month_end=None, quiet=None)  # fmt: skip
    assert judge(**base) is None
    assert judge(**{**base, "has_address": False}).reason == "no_address"  # type: ignore[union-attr]
    assert judge(**{**base, "opted_out": True}).reason == "opted_out"  # type: ignore[union-attr]
    # Transactional messages ignore opt-outs, caps and quiet hours, not the platform's cap.
    tx = {**base, "category": "transactional", "opted_out": True, "quiet": now,
          "cap_count": 1, "cap_window_sends": [now]}  # fmt: skip
    assert judge(**tx) is None
    end = sh(0, day=31) + timedelta(days=1)
    capped = judge(**{**tx, "monthly_cap": 4, "month_sends": 4, "month_end": end})
    assert capped is not None and capped.reason == "monthly_cap" and capped.deferred_until == end
    # Frequency cap 2 in 24 h with sends at 08:00 and 10:00: the 08:00 one frees a slot.
    sends = [sh(10), sh(8)]
    cap = judge(**{**base, "cap_count": 2, "cap_window_sends": sends})
    assert cap is not None and (cap.status, cap.reason) == ("suppressed", "frequency_cap")
    assert cap.deferred_until == sh(8, day=3)
    assert judge(**{**base, "cap_count": 3, "cap_window_sends": sends}) is None
    quiet = judge(**{**base, "quiet": sh(9, day=3)})
    assert quiet is not None and (quiet.status, quiet.reason) == ("deferred", "quiet_hours")
