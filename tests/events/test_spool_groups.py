"""Waiting spool segments loaded several at a time (decision 0053): the same rows as loading
them one by one, each name recorded, a failing group falls back to single loads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from liebian.events.spool import GROUP_BYTES, GROUP_LINES, Flusher, Spool
from liebian.events.store import open_event_store
from liebian.events.store.duckdb_store import DuckDBEventStore


def _line(i: int, event_id: str | None = None, user: str | None = None) -> bytes:
    rec = {
        "workspace_id": "ws1",
        "event_id": event_id or f"e{i}",
        "event": "click" if user is None else "signup",
        "ts": "2024-03-01T00:00:00+08:00",
        "received_at": "2024-03-01 00:00:01",
        "visitor_id": f"v{i % 7}",
        "user_id": user,
        "channel": "wx",
    }
    return (json.dumps(rec) + "\n").encode()


def _segments(spool: Spool, sizes: list[int], start: int = 0) -> int:
    i = start
    for size in sizes:
        spool.append_line(b"".join(_line(i + k) for k in range(size)))
        i += size
        spool.seal()
    return i


def test_waiting_segments_load_in_groups_within_the_limits(tmp_path: Path) -> None:
    store = open_event_store(tmp_path / "events.duckdb")
    spool = Spool(tmp_path / "spool")
    _segments(spool, [4, 4, 4, 4, 3])
    names = [p.name.removesuffix(".ndjson") for p in spool.sealed_segments()]
    groups: list[list[str]] = []
    singles: list[str] = []

    def group(members: list[tuple[Path, str]]) -> None:
        groups.append([n for _, n in members])
        assert isinstance(store, DuckDBEventStore)
        store.insert_segments(members)

    def single(path: Path, name: str) -> None:
        singles.append(name)
        store.insert_ndjson(path, segment=name)

    assert spool.load_sealed(single, group=group, group_lines=8, group_bytes=1 << 20) == 5
    assert groups == [names[0:2], names[2:4]]
    assert singles == [names[4]]
    assert spool.sealed_segments() == []
    assert store.count("ws1") == 19
    for name in names:  # every name recorded: a replay skips each
        assert store.segment_loaded(name)
    spool.close()


def test_group_by_bytes_and_unknown_segments_alone(tmp_path: Path) -> None:
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    # A segment another process left (its lines unknown here): loaded alone.
    (spool_dir / "seg-00000000000000000001-1-000001.ndjson").write_bytes(_line(100))
    store = open_event_store(tmp_path / "events.duckdb")
    spool = Spool(spool_dir)
    _segments(spool, [3, 3, 3])
    size = spool.sealed_segments()[1].stat().st_size
    groups: list[int] = []
    singles: list[str] = []

    def group(members: list[tuple[Path, str]]) -> None:
        groups.append(len(members))
        assert isinstance(store, DuckDBEventStore)
        store.insert_segments(members)

    def single(path: Path, name: str) -> None:
        singles.append(name)
        store.insert_ndjson(path, segment=name)

    spool.load_sealed(single, group=group, group_lines=100, group_bytes=2 * size)
    assert singles[0] == "seg-00000000000000000001-1-000001"
    assert groups == [2]
    assert len(singles) == 2
    assert store.count("ws1") == 10
    spool.close()


def test_a_failing_group_falls_back_to_single_loads(tmp_path: Path) -> None:
    store = open_event_store(tmp_path / "events.duckdb")
    spool = Spool(tmp_path / "spool")
    _segments(spool, [2, 2, 2])
    singles: list[str] = []

    def group(members: list[tuple[Path, str]]) -> None:
        raise RuntimeError("the group load failed")

    def single(path: Path, name: str) -> None:
        singles.append(name)
        store.insert_ndjson(path, segment=name)

    assert spool.load_sealed(single, group=group, group_lines=100, group_bytes=1 << 20) == 3
    assert len(singles) == 3
    assert store.count("ws1") == 6
    assert spool.sealed_segments() == []
    assert spool.last_error is None
    spool.close()


def test_insert_segments_skips_recorded_names_and_dedupes_across_segments(
    tmp_path: Path,
) -> None:
    store = DuckDBEventStore(tmp_path / "events.duckdb")
    a, b, c = tmp_path / "a.ndjson", tmp_path / "b.ndjson", tmp_path / "c.ndjson"
    a.write_bytes(_line(1) + _line(2))
    b.write_bytes(_line(3) + _line(2, event_id="e1"))  # e1 again, in another segment
    c.write_bytes(_line(4) + _line(5, user="u5"))
    assert store.insert_ndjson(a, segment="a").inserted == 2
    # "a" was loaded already (a crash between the commit and the deletes): left out.
    result = store.insert_segments([(a, "a"), (b, "b"), (c, "c")])
    assert (result.inserted, result.duplicates) == (3, 1)
    assert store.count("ws1") == 5
    assert all(store.segment_loaded(n) for n in "abc")
    assert store.insert_segments([(b, "b"), (c, "c")]).inserted == 0
    # The identity map and first touch are kept by a group load as by a single one.
    assert store.query("SELECT visitor_id, user_id FROM aliases", {}) == [("v5", "u5")]
    assert store.query("SELECT count(*) FROM first_touch", {})[0][0] == 5
    store.close()


def test_the_flusher_loads_waiting_segments_in_groups(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_event_store(tmp_path / "events.duckdb")
    spool = Spool(tmp_path / "spool")
    _segments(spool, [5, 5, 5])
    calls: list[int] = []
    assert isinstance(store, DuckDBEventStore)
    original = store.insert_segments

    def spy(members: list[tuple[Path, str]]) -> object:
        calls.append(len(members))
        return original(members)

    monkeypatch.setattr(store, "insert_segments", spy)
    flusher = Flusher(spool, store)
    flusher._tick()
    assert calls == [3]  # well within GROUP_LINES / GROUP_BYTES
    assert 2 * spool.max_segment_lines <= GROUP_LINES
    assert store.count("ws1") == 15
    assert 2 * spool.max_segment_bytes <= GROUP_BYTES
    spool.close()


def test_a_split_write_that_fails_halfway_leaves_nothing_of_the_request(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno
    import os

    from liebian.events import spool as spool_module
    from liebian.events.spool import SpoolWriteError

    directory = tmp_path / "spool"
    spool = Spool(directory, max_segment_lines=4, max_segment_age=3600, max_segment_quiet=3600)
    spool.append_line(_line(0) + _line(1) + _line(2))
    real_write = os.write
    calls = [0]

    def full_disk_on_the_second(fd: int, data: object) -> int:
        calls[0] += 1
        if calls[0] == 2:  # the rest of the request, into the next segment
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)  # type: ignore[arg-type]

    monkeypatch.setattr(spool_module.os, "write", full_disk_on_the_second)
    with pytest.raises(SpoolWriteError):
        spool.append_line(_line(3) + _line(4) + _line(5))
    monkeypatch.setattr(spool_module.os, "write", real_write)
    assert calls[0] == 2
    assert spool.sealed_segments() == []
    [open_segment] = directory.glob("seg-*.open")
    assert open_segment.read_bytes() == _line(0) + _line(1) + _line(2)
    spool.append_line(_line(6) + _line(7))  # later writes go on as before
    spool.seal()
    store = open_event_store(tmp_path / "events.duckdb")
    assert spool.flush_once(store).inserted == 5
    ids = sorted(r[0] for r in store.query("SELECT event_id FROM events", {}))
    assert ids == ["e0", "e1", "e2", "e6", "e7"]
    spool.close()


def test_a_load_merges_only_the_derived_tables_its_rows_reach(tmp_path: Path) -> None:
    store = DuckDBEventStore(tmp_path / "events.duckdb")
    plain, rich = tmp_path / "plain.ndjson", tmp_path / "rich.ndjson"
    plain.write_bytes(b"".join(_line(i) for i in range(3)))
    community = {
        "workspace_id": "ws1",
        "event_id": "g1",
        "event": "group_joined",
        "ts": "2024-03-01T00:00:00+08:00",
        "visitor_id": "v1",
        "properties": json.dumps({"community_id": "c1", "group_id": "g1"}),
    }
    campaign = {
        "workspace_id": "ws1",
        "event_id": "p1",
        "event": "page_view",
        "ts": "2024-03-01T00:00:00+08:00",
        "visitor_id": "v2",
        "campaign_id": "cmp1",
    }
    rich.write_bytes((json.dumps(community) + "\n" + json.dumps(campaign) + "\n").encode())

    def rows(table: str) -> int:
        return int(store.query(f"SELECT count(*) FROM {table}", {})[0][0])

    store.insert_segments([(plain, "plain")])
    assert (rows("community_events"), rows("community_days"), rows("campaign_rollup")) == (0, 0, 0)
    assert rows("aliases") == 0 and rows("first_touch") == 3
    store.insert_segments([(rich, "rich")])
    assert rows("community_events") == 1 and rows("community_days") == 3  # group, tier, all
    assert store.campaign_counts("ws1", ["cmp1"], by=None)[0][1]["seen"] == 1
    store.close()
