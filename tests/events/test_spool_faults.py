"""The spool under faults: damaged segments, failed writes, a store that is down, and segment
ages after an idle spell (issue 9, items 4 and 8)."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from liebian.events.spool import (
    MAX_SEGMENT_FAILURES,
    Flusher,
    SegmentLoadError,
    Spool,
    salvage_lines,
)
from liebian.events.store import open_event_store


def _line(i: int, ws: str = "ws1") -> bytes:
    rec = {"workspace_id": ws, "event_id": f"e{i}", "event": "click", "ts": "2024-03-01 00:00:00"}
    return (json.dumps(rec) + "\n").encode()


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_a_damaged_segment_is_quarantined_and_the_later_ones_still_load(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spool = Spool(tmp_path / "spool")
    store = open_event_store(tmp_path / "events.duckdb")
    # A torn write in the middle of a segment: half a record, then whole ones after it, one
    # of them on the same line as the torn part (what a failed write followed by a good one
    # leaves behind).
    torn = _line(1)[:25]
    spool.append_line(_line(0) + torn + _line(2) + _line(3))
    spool.seal()
    spool.append_line(_line(4) + _line(5))  # a clean later segment
    spool.seal()
    assert len(spool.sealed_segments()) == 2

    with caplog.at_level(logging.ERROR, logger="liebian.spool"):
        spool.flush_once(store)

    # Every whole record is loaded (e1 was never written whole), nothing is left waiting.
    ids = {r[0] for r in store.query("SELECT event_id FROM events", {})}
    assert ids == {"e0", "e2", "e3", "e4", "e5"}
    assert spool.sealed_segments() == []
    quarantined = spool.quarantined_segments()
    assert len(quarantined) == 1 and torn in quarantined[0].read_bytes()
    health = spool.health()
    assert health.quarantined_segments == 1 and health.quarantined_total == 1
    assert any("quarantined" in r.getMessage() for r in caplog.records)
    spool.close()
    store.close()


def test_salvage_keeps_the_record_after_a_tear_on_the_same_line() -> None:
    good, bad = salvage_lines(_line(0) + _line(1)[:30] + _line(2) + b"\n" + b"not json\n")
    assert [json.loads(g)["event_id"] for g in good] == ["e0", "e2"]
    assert bad == 2


def test_a_store_that_is_down_quarantines_nothing(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    for i in range(3):
        spool.append_line(_line(i))
        spool.seal()

    def down(_path: Path, _name: str) -> None:
        raise ConnectionError("store unreachable")

    for _ in range(MAX_SEGMENT_FAILURES * 2):
        with pytest.raises(SegmentLoadError):
            spool.load_sealed(down)
    assert len(spool.sealed_segments()) == 3
    assert spool.quarantined_segments() == []
    assert spool.health().last_error is not None
    spool.close()


def test_a_segment_the_store_keeps_refusing_is_set_aside_once_others_load(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    for i in range(2):
        spool.append_line(_line(i))
        spool.seal()
    first, second = spool.sealed_segments()
    loaded: list[str] = []

    def refuse_first(path: Path, name: str) -> None:
        if path == first:
            raise ValueError("conversion error in line 1")
        loaded.append(name)

    for _ in range(MAX_SEGMENT_FAILURES - 1):
        with pytest.raises(SegmentLoadError):
            spool.load_sealed(refuse_first)
    assert first.exists()  # not yet: it may be a passing fault
    assert loaded == [second.name.removesuffix(".ndjson")]  # the later one did not wait
    spool.load_sealed(refuse_first)
    assert not first.exists()
    assert [p.name for p in spool.quarantined_segments()] == [first.name]
    assert spool.health().last_error is None
    spool.close()


def test_a_failed_write_leaves_no_torn_line(tmp_path: Path) -> None:
    """A write past the file-size limit (as a full disk would) is refused whole: the segment
    keeps only acknowledged lines, and every acknowledged line loads."""
    spool_dir = tmp_path / "spool"
    child = textwrap.dedent(
        f"""
        import json, resource
        from liebian.events.spool import Spool, SpoolWriteError
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.RLIM_INFINITY))
        s = Spool({str(spool_dir)!r})
        acked, refused = [], 0
        for i in range(40):
            rec = {{"workspace_id": "ws1", "event_id": f"e{{i}}", "event": "click",
                    "ts": "2024-03-01 00:00:00", "properties": "x" * 300}}
            try:
                s.append_line((json.dumps(rec) + "\\n").encode())
                acked.append(f"e{{i}}")
            except SpoolWriteError:
                refused += 1
                s.seal()  # what the flusher does within a tick: later writes go to a new segment
        s.close()
        print(json.dumps({{"acked": acked, "refused": refused}}))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", child], capture_output=True, text=True, check=True, timeout=60
    )
    result = json.loads(out.stdout)
    assert result["refused"] > 0
    store = open_event_store(tmp_path / "events.duckdb")
    spool = Spool(spool_dir)
    spool.flush_once(store)
    ids = sorted(r[0] for r in store.query("SELECT event_id FROM events", {}))
    assert ids == sorted(result["acked"])
    assert spool.quarantined_segments() == []
    spool.close()
    store.close()


def test_a_segment_is_as_old_as_its_first_write_not_the_idle_spell_before_it(
    tmp_path: Path,
) -> None:
    clock = Clock()
    spool = Spool(tmp_path / "spool", max_segment_age=0.0, clock=clock)
    store = open_event_store(tmp_path / "events.duckdb")
    flusher = Flusher(spool, store, interval=3600, defer=lambda: True, max_defer=30)
    clock.now += 3600  # an idle hour, then a burst starts
    spool.append_line(_line(0))
    flusher._tick()  # seals it: its first event is 0 s old, so its load waits out the burst
    assert flusher.deferred_ticks == 1
    assert spool.oldest_sealed_age() == 0.0
    assert store.count("ws1") == 0
    spool.close()
    store.close()


def test_a_burst_holds_loads_back_no_longer_than_max_defer(tmp_path: Path) -> None:
    clock = Clock()
    spool = Spool(tmp_path / "spool", max_segment_age=0.0, clock=clock)
    store = open_event_store(tmp_path / "events.duckdb")
    flusher = Flusher(spool, store, interval=3600, defer=lambda: True, max_defer=0.3)
    spool.append_line(b"".join(_line(i) for i in range(3)))
    flusher._tick()
    flusher._tick()
    assert flusher.deferred_ticks == 2 and store.count("ws1") == 0
    clock.now += 1  # the burst never ends, but its oldest events have waited past max_defer
    flusher._tick()
    assert store.count("ws1") == 3
    assert flusher.deferred_ticks == 2
    spool.close()
    store.close()


def test_a_burst_holds_loads_back_only_while_they_would_catch_up_within_the_budget(
    tmp_path: Path,
) -> None:
    clock = Clock()
    spool = Spool(tmp_path / "spool", max_segment_age=0.0, clock=clock)
    store = open_event_store(tmp_path / "events.duckdb")
    flusher = Flusher(
        spool, store, interval=3600, defer=lambda: True, max_defer=3600, defer_budget=1.0
    )
    first = b"".join(_line(i) for i in range(3))
    flusher.load_seconds_per_byte = 0.9 / len(first)  # what waits loads in 0.9 s: under budget
    spool.append_line(first)
    flusher._tick()
    assert flusher.deferred_ticks == 1 and store.count("ws1") == 0
    assert flusher.catch_up_estimate() == pytest.approx(0.9)
    spool.append_line(_line(3))  # now it would take longer than the budget once the burst ends
    flusher._tick()
    assert flusher.deferred_ticks == 1
    assert store.count("ws1") == 4
    spool.close()
    store.close()


def test_the_flusher_learns_its_load_rate_from_segments_it_loaded(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool", max_segment_age=0.0)
    store = open_event_store(tmp_path / "events.duckdb")
    flusher = Flusher(spool, store, interval=3600, defer=lambda: False, defer_budget=15)
    prior = flusher.load_seconds_per_byte
    spool.append_line(b"".join(_line(i) for i in range(3)))  # too small to say anything
    flusher._tick()
    assert flusher.load_seconds_per_byte == prior
    big = b"".join(_line(i) for i in range(3, 20003))  # > 1 MiB
    assert len(big) > 1 << 20
    spool.append_line(big)
    flusher._tick()
    assert store.count("ws1") == 20003
    learned = flusher.load_seconds_per_byte
    assert learned != prior and learned > 0
    spool.close()
    store.close()
