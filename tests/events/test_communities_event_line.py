"""events.sink.event_line builds the record EventRow.to_record would (it copies a blank
record instead of building the dataclass: entry decisions write two events each)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest

from liebian.events import sink
from liebian.events.store.base import EventRow


def _reference(fields: dict[str, Any]) -> dict[str, Any]:
    given = dict(fields)
    props = {k: v for k, v in (given.pop("properties") or {}).items() if v is not None}
    row = EventRow(received_at=datetime.now(UTC), properties=props or None, **given)
    return row.to_record()


@pytest.mark.parametrize(
    "fields",
    [
        {"properties": {"a": "中文\u2028\x01", "n": 1, "f": 1.5, "l": [1, "x"], "gone": None,
                        "big": 2**70}, "user_id": "u", "is_qr": True, "revenue": 5},
        {"properties": None, "visitor_id": "v", "platform": "wechat", "channel": "c"},
        {"properties": {1: "a non-string key"}},
    ],
)  # fmt: skip
def test_the_same_record_as_the_dataclass(fields: dict[str, Any]) -> None:
    ts = datetime(2026, 12, 3, 8, 0, 0, 123456, tzinfo=timezone(timedelta(hours=8)))
    base: dict[str, Any] = {
        "workspace_id": "ws_1",
        "event": "group_joined",
        "event_id": "cm:1",
        "ts": ts,
    }
    got = orjson.loads(sink.event_line(**base, **fields))
    want = _reference({**base, **fields})
    assert got.pop("received_at") and want.pop("received_at")
    assert got == want
    assert got["ts"] == "2026-12-03 00:00:00.123"


def test_an_unknown_column_is_refused() -> None:
    with pytest.raises(TypeError, match="bogus"):
        sink.event_line(workspace_id="w", event="e", event_id="i", bogus=1)
