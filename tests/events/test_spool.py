from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from liebian.events.spool import Spool, SpoolLocked
from liebian.events.store import open_event_store


def _line(i: int) -> bytes:
    rec = {
        "workspace_id": "ws1",
        "event_id": f"e{i}",
        "event": "click",
        "ts": "2024-03-01 00:00:00",
    }
    return (json.dumps(rec) + "\n").encode()


def test_sigkill_loses_no_acknowledged_append(tmp_path: Path) -> None:
    spool_dir = tmp_path / "spool"
    n = 5000
    child = textwrap.dedent(
        f"""
        import json, sys, time
        from liebian.events.spool import Spool
        s = Spool({str(spool_dir)!r}, max_segment_bytes=64 * 1024)
        for i in range({n}):
            rec = {{"workspace_id": "ws1", "event_id": f"e{{i}}", "event": "click",
                    "ts": "2024-03-01 00:00:00"}}
            s.append_line((json.dumps(rec) + "\\n").encode())
        print("answered", {n}, flush=True)
        time.sleep(60)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    assert proc.stdout.readline().split() == [b"answered", str(n).encode()]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()

    store = open_event_store(tmp_path / "events.duckdb")
    spool = Spool(spool_dir)  # recovery seals the segment the dead process left open
    assert spool.flush_once(store).inserted == n
    assert store.count("ws1") == n
    assert spool.sealed_segments() == []
    spool.close()
    store.close()


def test_torn_last_line_is_cut_on_recovery(tmp_path: Path) -> None:
    (tmp_path / "seg-00000000000000000001-1-000001.open").write_bytes(_line(1) + b'{"workspa')
    store = open_event_store(tmp_path / "events.duckdb")
    spool = Spool(tmp_path)
    assert spool.flush_once(store).inserted == 1
    spool.close()


def test_crash_after_commit_before_delete_does_not_double_insert(tmp_path: Path) -> None:
    store = open_event_store(tmp_path / "events.duckdb")
    spool = Spool(tmp_path / "spool")
    for i in range(10):
        spool.append_line(_line(i))
    spool.seal()
    [segment] = spool.sealed_segments()
    # Load it as the flusher would, then "crash" before the unlink.
    store.insert_ndjson(segment, segment=segment.name.removesuffix(".ndjson"))
    assert spool.flush_once(store).inserted == 0
    assert store.count("ws1") == 10
    spool.close()


def test_rotation_by_size_and_concurrent_appends(tmp_path: Path) -> None:
    store = open_event_store(tmp_path / "events.duckdb")
    spool = Spool(tmp_path / "spool", max_segment_bytes=4096)

    def worker(base: int) -> None:
        for i in range(2000):
            spool.append_line(_line(base + i))

    threads = [threading.Thread(target=worker, args=(k * 10_000,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(spool.sealed_segments()) > 10
    assert spool.flush_once(store).inserted == 8000
    spool.close()


def test_one_process_per_spool_directory(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    # flock is per open file description, so a second Spool in this process conflicts too.
    with pytest.raises(SpoolLocked):
        Spool(tmp_path)
    spool.close()


def test_append_dict_and_drain_callback(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append({"workspace_id": "ws1", "event_id": "a", "event": "view", "ts": "2024-03-01"})
    seen: list[bytes] = []
    assert spool.drain(lambda path, _name: seen.append(path.read_bytes())) == 1
    assert json.loads(seen[0])["event_id"] == "a"
    assert spool.drain(lambda path, _name: None) == 0
    spool.close()


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="SCHED_IDLE is Linux-only")
def test_flusher_thread_runs_in_the_idle_scheduling_class(tmp_path: Path) -> None:
    # The loader must never take a core from the request path (docs/benchmarks.md).
    from liebian.events.spool import Flusher

    spool = Spool(tmp_path / "spool")
    store = open_event_store(f"duckdb:///{tmp_path / 'events.duckdb'}")
    seen: list[int] = []
    names: list[str] = []
    original = store.insert_ndjson

    def spy(path: Path, *, segment: str | None = None):  # type: ignore[no-untyped-def]
        seen.append(os.sched_getscheduler(threading.get_native_id()))
        names.append(Path(f"/proc/self/task/{threading.get_native_id()}/comm").read_text())
        return original(path, segment=segment)

    store.insert_ndjson = spy  # type: ignore[method-assign]
    flusher = Flusher(spool, store, interval=0.05)
    flusher.start()
    spool.append_line(_line(1))
    for _ in range(200):  # up to 10 s for the first tick
        if seen:
            break
        threading.Event().wait(0.05)
    flusher.stop(final_flush=False)
    assert seen and seen[0] == os.SCHED_IDLE
    # Named in the OS, so top -H and the ingestion bench can tell its CPU apart.
    assert names[0].strip() == "liebian-flusher"
    # The thread that started the flusher keeps its normal policy.
    assert os.sched_getscheduler(0) == os.SCHED_OTHER
    spool.close()
    store.close()


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="SCHED_IDLE is Linux-only")
def test_flusher_catches_up_at_normal_priority_and_then_yields_again(tmp_path: Path) -> None:
    # Starved in SCHED_IDLE by a busy machine, the loader fell seconds behind: once the oldest
    # waiting events are older than catch_up_after, it loads at normal priority.
    from liebian.events.spool import Flusher

    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    old = f"seg-{time.time_ns() - 30 * 10**9:020d}-1-000001.ndjson"
    (spool_dir / old).write_bytes(_line(1))
    spool = Spool(spool_dir)
    assert (spool.oldest_sealed_age() or 0) >= 30
    store = open_event_store(tmp_path / "events.duckdb")
    seen: list[tuple[str, int]] = []
    original = store.insert_ndjson

    def spy(path: Path, *, segment: str | None = None):  # type: ignore[no-untyped-def]
        seen.append((path.name, os.sched_getscheduler(threading.get_native_id())))
        return original(path, segment=segment)

    store.insert_ndjson = spy  # type: ignore[method-assign]
    flusher = Flusher(spool, store, interval=0.05, catch_up_after=10)
    flusher.start()
    _wait_until(lambda: len(seen) >= 1)
    spool.append_line(_line(2))  # fresh: loaded once sealed by age, back in SCHED_IDLE
    spool.max_segment_age = 0.0
    _wait_until(lambda: len(seen) >= 2)
    flusher.stop(final_flush=False)
    assert seen[0] == (old, os.SCHED_OTHER)
    assert seen[1][1] == os.SCHED_IDLE
    assert spool.oldest_sealed_age() is None
    assert store.count("ws1") == 2
    spool.close()
    store.close()


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="SCHED_IDLE is Linux-only")
def test_the_writer_that_seals_a_segment_raises_a_starved_loader(tmp_path: Path) -> None:
    # On a busy machine a loader in SCHED_IDLE gets no core, so it cannot run the tick that
    # would raise it when behind: the writer that seals a segment does it for it.
    from typing import cast

    from liebian.events.spool import Flusher
    from liebian.events.store.base import EventStore

    spool_dir = tmp_path / "spool"
    spool = Spool(spool_dir, max_segment_lines=1)
    flusher = Flusher(spool, cast(EventStore, None), catch_up_after=10)
    ready, done = threading.Event(), threading.Event()

    def loader() -> None:  # stands in for the flusher's thread, idle and never ticking
        flusher._thread_id = threading.get_native_id()
        flusher._use_idle_priority(True)
        ready.set()
        done.wait(10)

    thread = threading.Thread(target=loader)
    thread.start()
    try:
        assert ready.wait(10)
        tid = flusher._thread_id
        assert tid is not None and os.sched_getscheduler(tid) == os.SCHED_IDLE
        spool.append_line(_line(1))
        spool.append_line(_line(2))  # seals the first: it is fresh, the loader stays idle
        assert os.sched_getscheduler(tid) == os.SCHED_IDLE and flusher.nudged == 0
        old = f"seg-{time.time_ns() - 30 * 10**9:020d}-1-000001.ndjson"
        (spool_dir / old).write_bytes(_line(0))  # events waiting 30 s
        spool.append_line(_line(3))  # seals another: now the loader is behind
        assert os.sched_getscheduler(tid) == os.SCHED_OTHER and flusher.nudged == 1
        spool.append_line(_line(4))
        assert flusher.nudged == 1  # raised once, until its own tick decides again
    finally:
        done.set()
        thread.join()
    spool.close()


def _wait_until(condition: Callable[[], bool], seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_a_quiet_segment_is_sealed_before_its_age(tmp_path: Path) -> None:
    # The tail of a burst should not wait a whole max_segment_age to reach the store.
    spool = Spool(tmp_path, max_segment_age=3600, max_segment_quiet=3600)
    spool.append_line(_line(1))
    spool.maybe_rotate()
    assert spool.sealed_segments() == []
    spool.max_segment_quiet = 0.0
    spool.maybe_rotate()
    assert len(spool.sealed_segments()) == 1
    spool.close()


def test_a_write_past_max_lines_fills_the_segment_and_starts_the_next(tmp_path: Path) -> None:
    # Busy segments hold exactly one DuckDB row group: a request's lines that do not all fit
    # complete the open segment, the rest start the next (decision 0053).
    spool = Spool(tmp_path, max_segment_lines=10, max_segment_age=3600, max_segment_quiet=3600)
    spool.append_line(b"".join(_line(i) for i in range(6)))
    spool.append_line(b"".join(_line(i) for i in range(6, 10)))  # exactly 10: stays open
    assert spool.sealed_segments() == []
    spool.append_line(b"".join(_line(i) for i in range(10, 13)))  # a new segment: none fits
    [first] = spool.sealed_segments()
    assert first.read_bytes() == b"".join(_line(i) for i in range(10))
    spool.append_line(b"".join(_line(i) for i in range(13, 21)))  # 7 fit, 1 goes on
    spool.append_line(b"".join(_line(i) for i in range(21, 40)))  # 9 fit, 10 go on
    spool.seal()
    segments = [p.read_bytes() for p in spool.sealed_segments()]
    assert [len(d.splitlines()) for d in segments] == [10, 10, 10, 10]
    assert b"".join(segments) == b"".join(_line(i) for i in range(40))
    spool.close()


@pytest.mark.parametrize("total", [2, 3, 7, 10])
def test_a_request_is_cut_after_whole_lines_from_either_end(total: int) -> None:
    from liebian.events.spool import _after_lines

    data = b"".join(_line(i) for i in range(total))
    for n in range(1, total):
        assert data[: _after_lines(data, n, total)] == b"".join(_line(i) for i in range(n))


def test_age_of_a_sealed_segment_named_otherwise_comes_from_its_last_write(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    stray = tmp_path / "seg-copied-by-hand.ndjson"
    stray.write_bytes(_line(1))
    os.utime(stray, (time.time() - 60, time.time() - 60))
    assert 59 <= (spool.oldest_sealed_age() or 0) < 120
    spool.close()


def test_flusher_loads_a_filled_segment_without_waiting_for_its_tick(tmp_path: Path) -> None:
    from liebian.events.spool import Flusher

    # The open segment (the sixth line) never counts as quiet here: on a loaded machine it
    # was sealed and loaded before the stop (6 == 5).
    spool = Spool(
        tmp_path / "spool", max_segment_lines=5, max_segment_age=3600, max_segment_quiet=3600
    )
    store = open_event_store(tmp_path / "events.duckdb")
    flusher = Flusher(spool, store, interval=3600)
    flusher.start()
    spool.append_line(b"".join(_line(i) for i in range(5)))
    spool.append_line(_line(5))  # seals the first five
    _wait_until(lambda: store.count("ws1") == 5)
    stopping = threading.Thread(target=flusher.stop, kwargs={"final_flush": False})
    stopping.start()
    stopping.join(30)  # stop wakes the thread instead of waiting out the hour
    assert not stopping.is_alive()
    assert store.count("ws1") == 5
    spool.close()
    store.close()


def test_click_burst_is_a_rate_over_at_least_its_window() -> None:
    from liebian.events.spool import ClickBurst

    clicks = [0]
    burst = ClickBurst(lambda: clicks[0], per_second=100, window=0.05)
    assert burst() is False
    clicks[0] += 10_000  # far above 100/s over any window this test can take
    time.sleep(0.06)
    assert burst() is True
    # Called again at once (a seal wakes the flusher twice): the verdict stands, it is not
    # a rate over a millisecond with no clicks in it.
    assert burst() is True
    time.sleep(0.06)  # no clicks for a whole window: the burst is over
    assert burst() is False


def test_flusher_holds_loads_during_a_burst_and_loads_when_it_ends(tmp_path: Path) -> None:
    from liebian.events.spool import Flusher

    spool = Spool(tmp_path / "spool", max_segment_age=0.0)
    store = open_event_store(tmp_path / "events.duckdb")
    bursting = threading.Event()
    bursting.set()
    flusher = Flusher(spool, store, interval=0.02, defer=bursting.is_set, max_defer=3600)
    flusher.start()
    spool.append_line(b"".join(_line(i) for i in range(4)))
    _wait_until(lambda: flusher.deferred_ticks >= 5)
    assert store.count("ws1") == 0  # durable in the spool, waiting
    assert spool.sealed_segments()
    bursting.clear()
    _wait_until(lambda: store.count("ws1") == 4)
    flusher.stop()
    spool.close()
    store.close()
