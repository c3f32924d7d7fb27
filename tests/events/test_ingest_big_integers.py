"""An integer property beyond 64 bits is refused the same way whichever path parses the body:
the batch whose items are all valid (pydantic-core from the bytes), the batch with a bad item
beside it (parsed first, then checked item by item) and a single event. It was stored as a
float (1.1805916207174113e+21) on the last two, which read the body with orjson."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from liebian.events import service
from liebian.events.spool import Spool
from liebian.kit.errors import Invalid

BIG = 2**70
PROBLEM = "properties hold an integer beyond the 64-bit range; send it as a string"


def _event(event_id: str, value: int) -> bytes:
    return b'{"event":"x","event_id":"%s","properties":{"n":%d}}' % (event_id.encode(), value)


def _spooled(spool: Spool) -> list[dict[str, object]]:
    spool.seal()
    return [
        orjson.loads(line)
        for path in spool.sealed_segments()
        for line in path.read_bytes().splitlines()
    ]


@pytest.mark.parametrize(
    "beside",
    [b'{"event":"y","event_id":"ok"}', b'{"event":""}', b'{"event":"y","event_id":" padded "}'],
    ids=["valid", "invalid", "lax"],
)
def test_a_batch_refuses_the_big_integer_whatever_its_other_items(
    tmp_path: Path, beside: bytes
) -> None:
    spool = Spool(tmp_path)
    body = b"[" + _event("big", BIG) + b"," + _event("small", 2**62) + b"," + beside + b"]"
    accepted = service.ingest(workspace_id="w", raw=body, spool=spool, now=datetime.now(UTC))
    refused = {r.index: r.errors for r in accepted.result.rejected}
    assert refused.get(0) == [{"field": "properties", "problem": PROBLEM}]
    stored = {e["event_id"]: e for e in _spooled(spool)}
    assert "big" not in stored
    assert stored["small"]["properties"] == {"n": 2**62}  # exact, an int


def test_a_single_event_with_a_big_integer_is_refused(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    with pytest.raises(Invalid) as refused:
        service.ingest(workspace_id="w", raw=_event("big", BIG), spool=spool, now=datetime.now(UTC))
    assert PROBLEM in refused.value.message
    assert _spooled(spool) == []


@pytest.mark.parametrize("value", [2**63 - 1, -(2**63), 2**64 - 1])
def test_integers_orjson_can_write_are_kept_exact(tmp_path: Path, value: int) -> None:
    spool = Spool(tmp_path)
    body = b"[" + _event("a", value) + b',{"event":""}]'
    service.ingest(workspace_id="w", raw=body, spool=spool, now=datetime.now(UTC))
    service.ingest(workspace_id="w", raw=_event("b", value), spool=spool, now=datetime.now(UTC))
    stored = {e["event_id"]: e["properties"] for e in _spooled(spool)}
    assert stored == {"a": {"n": value}, "b": {"n": value}}
    assert all(type(p["n"]) is int for p in stored.values())
