"""The batch fast path (orjson + hand checks, events.service._plain_batch) takes only what
pydantic-core's EVENT_BATCH takes unchanged, and gives the same values; anything else goes
through pydantic as before, with its exact 4xx."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from liebian.events import service
from liebian.events.schemas import EVENT_BATCH

ODD_STRINGS = ["", " a", "a ", "\u3000a", "a\u00a0", "a\x1f", "\x1fa", "中文", "a" * 40, "a" * 41,
               "a" * 64, "a" * 65, "a" * 128, "a" * 129, "x{y", "},{"]  # fmt: skip
ODD_VALUES: list[Any] = [None, 0, 1.5, True, [], {}, "CNY", "cny", " CNY", "USDX", -1, 10**12,
                         10**12 + 1, 2**63, 2**64, -(2**63) - 1, 1e300, "1999", 12.0]  # fmt: skip
ODD_TS = ["2024-03-01T12:00:00Z", "2024-03-01T12:00:00.5+08:00", "2024-03-01 12:00:00Z",
          "2024-03-01T12:00:00", "2024-03-01T24:00:00Z", "2024-02-30T12:00:00Z", 1709294400,
          "2024-03-01t12:00:00z", "2024-03-01T12:00:00.1234567Z", "2099-01-01T00:00:00-00:00"]  # fmt: skip
KEYS = ["event_id", "visitor_id", "user_id", "click_id", "channel", "campaign_id", "link_id"]


def _random_event(rng: random.Random) -> dict[str, Any]:
    event: dict[str, Any] = {"event": rng.choice(["page_view", "signup", "$pv", "a.b:c-d", "9x",
                                                  " page_view", "x" * 64, "x" * 65, "", "a b"])}  # fmt: skip
    for key in rng.sample(KEYS, rng.randint(0, 4)):
        event[key] = rng.choice([*ODD_STRINGS, f"{key}-1", None, 5])
    if rng.random() < 0.3:
        event["revenue"] = rng.choice([*ODD_VALUES, 990, 29_900])
    if rng.random() < 0.2:
        event["currency"] = rng.choice(ODD_VALUES)
    if rng.random() < 0.3:
        event["ts"] = rng.choice(ODD_TS)
    if rng.random() < 0.5:
        size = rng.choice([0, 1, 2, 101])
        event["properties"] = {
            rng.choice(["k", " k", "k ", "", "path", f"p{i}"]) + str(i): rng.choice(
                [*ODD_VALUES, *ODD_STRINGS[:4], {"nested": 1}]
            )
            for i in range(size)
        }
    if rng.random() < 0.05:
        event["unknown"] = 1
    if rng.random() < 0.03:
        del event["event"]
    return event


def _same(fast: list[dict[str, Any]], slow: list[dict[str, Any]]) -> None:
    assert len(fast) == len(slow)
    for a, b in zip(fast, slow, strict=True):
        assert a == b
        assert {k: type(v) for k, v in a.items() if k != "ts"} == {
            k: type(v) for k, v in b.items() if k != "ts"
        }
        if a.get("ts") is not None:
            assert a["ts"].utcoffset() == b["ts"].utcoffset()
        if isinstance(a.get("properties"), dict):
            assert [type(v) for v in a["properties"].values()] == [
                type(v) for v in b["properties"].values()
            ]


def test_the_fast_path_takes_only_what_pydantic_takes_unchanged() -> None:
    rng = random.Random(10)
    taken = refused = 0
    for _ in range(3000):
        events = [_random_event(rng) for _ in range(rng.choice([1, 1, 2]))]
        raw = json.dumps(events, ensure_ascii=rng.random() < 0.5).encode()
        fast = service._plain_batch(raw)
        try:
            slow = EVENT_BATCH.validate_json(raw)
        except ValueError:
            assert fast is None, events
            refused += 1
            continue
        if fast is not None:
            _same(fast, slow)  # type: ignore[arg-type]
            taken += 1
    assert taken > 100 and refused > 300  # both sides were exercised


@pytest.mark.parametrize(
    "body",
    [
        b"[]",
        b"[1]",
        b'[{"event": "a", "properties": {"n": 1e400}}]',  # pydantic reads inf; orjson refuses
        b'[{"event": "a", "properties": {"n": NaN}}]',
        b'{"events": [{"event": "a"}]}',
        b'[{"event": "a", "properties": {"l": [1]}}]',  # nested: refused before parsing
        json.dumps([{"event": "a"}] * 10_001).encode(),
    ],
)
def test_what_the_fast_path_leaves_to_pydantic(body: bytes) -> None:
    assert service._plain_batch(body) is None


def test_a_mix_batch_takes_the_fast_path() -> None:
    events = [
        {"event": "page_view", "event_id": "e1", "visitor_id": "v1", "properties": {"path": "/"}},
        {"event": "signup", "event_id": "e2", "user_id": "u1", "visitor_id": "v1"},
        {"event": "purchase", "event_id": "e3", "user_id": "u1", "revenue": 990,
         "properties": {"order_id": "o1", "price": 9.9, "n": 2, "ok": True, "none": None}},
        {"event": "click", "event_id": "e4", "user_id": "u1", "channel": "wx_group",
         "ts": "2024-03-01T12:00:00.25+08:00", "currency": "USD"},
    ]  # fmt: skip
    raw = json.dumps(events).encode()
    fast = service._plain_batch(raw)
    assert fast is not None
    _same(fast, EVENT_BATCH.validate_json(raw))  # type: ignore[arg-type]


def test_the_fast_path_knows_every_field_and_limit_of_the_schema() -> None:
    """_plain_batch repeats EventIn's constraints: a field or limit changed in the schema and
    not there would let the fast path take what pydantic refuses."""
    from liebian.events.schemas import MAX_PROPERTIES_KEYS, MAX_REVENUE, ONE_EVENT

    schema = ONE_EVENT.json_schema()
    fields = schema["properties"]
    assert set(fields) == {*service._STR_LIMITS, "event", "ts", "properties", "revenue", "currency"}
    assert schema["additionalProperties"] is False and schema["required"] == ["event"]
    for key, limit in service._STR_LIMITS.items():
        [text, null] = fields[key]["anyOf"]
        assert null == {"type": "null"}
        assert text == {"type": "string", "maxLength": limit} | (
            {"minLength": 1} if key == "event_id" else {}
        )
    assert fields["properties"]["maxProperties"] == MAX_PROPERTIES_KEYS
    assert fields["revenue"]["anyOf"][0] == {
        "type": "integer",
        "minimum": 0,
        "maximum": MAX_REVENUE,
    }
