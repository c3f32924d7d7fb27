"""Durable local spool: append-only NDJSON segment files in one directory.

Why this shape: the redirect answers a 302 only after its click is recorded, and must not
wait on a database. ``append_line`` is one ``os.write`` to an ``O_APPEND`` descriptor: once it
returns, the bytes are in the kernel's page cache, which survives the death of the process
(SIGKILL, crash); only a machine crash can lose them, which ``fsync_interval`` bounds.

Layout: the segment being written is ``<name>.open``; sealing renames it to ``<name>.ndjson``
(rename is atomic). Names sort by creation time and embed the pid, so a name is never reused
after a restart: the store records loaded segment names, and a reused name would be skipped.
The flusher loads each sealed segment in one batch, and deletes it only after the store
committed; if the process dies between commit and delete, the replay finds the name already
recorded (DuckDB: same transaction) or drops the rows by event_id (ClickHouse).

One process owns a spool directory at a time (an flock on ``.lock``); give each server
process its own directory, the next start of that process recovers what it left.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import json
import os
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from liebian.events.store.base import EventStore, InsertResult

_OPEN = ".open"
_SEALED = ".ndjson"


class SpoolLocked(RuntimeError):
    """Another live process owns this spool directory."""


class Spool:
    def __init__(
        self,
        directory: str | Path,
        *,
        max_segment_bytes: int = 32 * 1024 * 1024,
        max_segment_lines: int = 120_000,
        max_segment_age: float = 1.0,
        max_segment_quiet: float = 0.2,
        fsync_interval: float | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.max_segment_bytes = max_segment_bytes
        # DuckDB stores rows in groups of 122,880: a load of up to one group goes through
        # its WAL, a bigger one writes whole groups at once but leaves a partial one that a
        # later checkpoint rewrites (150k-event loads: ~4.0-4.6 µs per event all told against
        # ~3.2-3.6 at 120k, docs/decisions/0010). A segment is sealed before a write would
        # take it past this many events (lines).
        self.max_segment_lines = max_segment_lines
        self.max_segment_age = max_segment_age
        # A segment nobody wrote to for this long is sealed at the next tick even if young:
        # the last events of a burst reach the store a tick after it ends, not a full
        # max_segment_age later, while steady traffic still fills segments to their age.
        self.max_segment_quiet = max_segment_quiet
        self.fsync_interval = fsync_interval
        self._lock = threading.Lock()
        # Set whenever a segment is sealed: the flusher loads it then instead of at its next
        # tick, so a burst's full segments do not wait out the interval.
        self.segment_sealed = threading.Event()
        # One loader at a time: the background flusher and a reader that wants current data
        # (stats, tests) may both drain; without this they race to load and unlink a segment.
        self._drain_lock = threading.Lock()
        self._lock_fd = os.open(self.directory / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            os.close(self._lock_fd)
            raise SpoolLocked(f"spool {self.directory} is in use by another process") from exc
        self._seq = 0
        self._recover()
        self._fd = -1
        self._path: Path | None = None
        self._size = 0
        self._opened_at = 0.0
        self._written_at = 0.0
        self._last_sync = time.monotonic()
        self._open_segment()

    # -- hot path ------------------------------------------------------------------------

    def append_line(self, line: bytes) -> None:
        """Append pre-serialized NDJSON (one line or a request's lines, ending with b"\\n")
        in one write."""
        lines = line.count(b"\n")
        with self._lock:
            if self._lines and self._lines + lines > self.max_segment_lines:
                self._rotate_locked()
            fd = self._fd
            view = memoryview(line)
            while view:  # regular files write fully; the loop is for ENOSPC-adjacent cases
                written = os.write(fd, view)
                view = view[written:]
            self._size += len(line)
            self._lines += lines
            self._written_at = time.monotonic()
            if self._size >= self.max_segment_bytes:
                self._rotate_locked()

    def append(self, record: bytes | Mapping[str, Any]) -> None:
        if isinstance(record, bytes):
            self.append_line(record if record.endswith(b"\n") else record + b"\n")
        else:
            line = json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"
            self.append_line(line.encode())

    # -- segments ------------------------------------------------------------------------

    def _new_name(self) -> str:
        self._seq += 1
        return f"seg-{time.time_ns():020d}-{os.getpid()}-{self._seq:06d}"

    def _open_segment(self) -> None:
        self._path = self.directory / (self._new_name() + _OPEN)
        self._fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._size = 0
        self._lines = 0
        self._opened_at = time.monotonic()

    def _rotate_locked(self) -> None:
        old_fd, old_path, old_size = self._fd, self._path, self._size
        self._open_segment()
        if self.fsync_interval is not None:
            os.fsync(old_fd)
        os.close(old_fd)
        assert old_path is not None
        if old_size == 0:
            old_path.unlink()
        else:
            old_path.rename(old_path.with_suffix(_SEALED))
            self.segment_sealed.set()

    def seal(self) -> None:
        """Close the current segment (if it holds anything) so the flusher can load it."""
        with self._lock:
            if self._size:
                self._rotate_locked()

    def maybe_rotate(self) -> None:
        """Seal by age or quiet, and fsync periodically if asked; called from the flusher
        loop."""
        with self._lock:
            now = time.monotonic()
            if self._size and (
                now - self._opened_at >= self.max_segment_age
                or now - self._written_at >= self.max_segment_quiet
            ):
                self._rotate_locked()
            if self.fsync_interval is not None and now - self._last_sync >= self.fsync_interval:
                os.fsync(self._fd)
                self._last_sync = now

    def sealed_segments(self) -> list[Path]:
        return sorted(self.directory.glob("seg-*" + _SEALED))

    def oldest_sealed_age(self) -> float | None:
        """Seconds since the oldest sealed segment was opened, which bounds how long its events
        have waited; None when nothing is sealed. Names start with their creation time."""
        for path in self.sealed_segments():  # sorted, oldest first
            try:
                created = int(path.name.split("-")[1]) / 1e9
            except (IndexError, ValueError):  # not a name this class wrote: its last write
                try:
                    created = path.stat().st_mtime
                except FileNotFoundError:  # loaded meanwhile by a reader draining the spool
                    continue
            return max(0.0, time.time() - created)
        return None

    def _recover(self) -> None:
        """Seal segments a dead process left open, cutting a torn last line (never acked)."""
        for path in sorted(self.directory.glob("seg-*" + _OPEN)):
            data = path.read_bytes()
            keep = data.rfind(b"\n") + 1
            if keep == 0:
                path.unlink()
                continue
            if keep != len(data):
                with open(path, "r+b") as fh:
                    fh.truncate(keep)
            path.rename(path.with_suffix(_SEALED))

    # -- flushing ------------------------------------------------------------------------

    def drain(self, callback: Callable[[Path, str], object]) -> int:
        """Seal the current segment and hand every sealed one to ``callback(path, name)``;
        a segment is deleted only after its callback returned. Returns segments drained."""
        self.seal()
        return self.load_sealed(callback)

    def load_sealed(self, callback: Callable[[Path, str], object]) -> int:
        """Hand each sealed segment to ``callback`` and delete it after; one caller at a time."""
        done = 0
        with self._drain_lock:
            for path in self.sealed_segments():
                callback(path, path.name.removesuffix(_SEALED))
                path.unlink()
                done += 1
        return done

    def flush_once(self, store: EventStore) -> InsertResult:
        inserted = duplicates = 0

        def load(path: Path, name: str) -> None:
            nonlocal inserted, duplicates
            res = store.insert_ndjson(path, segment=name)
            inserted += res.inserted
            duplicates += res.duplicates

        self.drain(load)
        return InsertResult(inserted, duplicates)

    def close(self) -> None:
        with self._lock:
            if self.fsync_interval is not None:
                os.fsync(self._fd)
            os.close(self._fd)
            if self._size == 0 and self._path is not None:
                self._path.unlink()
            elif self._path is not None:
                self._path.rename(self._path.with_suffix(_SEALED))
            self._fd = -1
        os.close(self._lock_fd)


def _set_idle_priority(idle: bool) -> None:
    """Put this thread in Linux's SCHED_IDLE class, or back in the normal one (the policy is
    per thread).

    Loading a segment into the store runs outside the GIL (DuckDB releases it) but still needs
    a core: on a small machine it competed with the event loop and the HTTP runtime and set
    the redirect's tail latency (p99 ~4 ms without the flusher, ~8 ms with it at 1 s ticks,
    docs/benchmarks.md). In SCHED_IDLE the loader runs on cycles nothing else wants and any
    waking request thread preempts it at once. But anything runnable on the machine starves
    it, so under sustained load it fell seconds behind (docs/decisions/0010): the flusher
    leaves the class while it catches up.
    """
    policy = os.SCHED_IDLE if idle else os.SCHED_OTHER
    # Not Linux, or not permitted (leaving SCHED_IDLE needs CAP_SYS_NICE or RLIMIT_NICE):
    # the thread keeps its policy.
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setscheduler(threading.get_native_id(), policy, os.sched_param(0))


def _name_os_thread(name: str) -> None:
    """Give this thread its name in the OS too (15 bytes max), so that top -H, /proc and
    profilers can tell the loader's CPU from the request threads'; Python leaves it unnamed."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_name = 15
        libc.prctl(pr_set_name, name.encode()[:15], 0, 0, 0)


class ClickBurst:
    """Whether redirects are arriving in a burst: at least ``per_second`` since the last call.

    Loading clicks into DuckDB costs the serving process several µs of CPU per click and
    competes with the redirects for both cores even in SCHED_IDLE (with loads running, the
    redirect's p99 doubled; docs/benchmarks.md). During a burst the clicks are durable on disk
    already, so their load can wait until it passes (bounded by ``Flusher.max_defer``). The
    hot path only increments a counter; the flusher turns it into a rate once a tick.
    """

    def __init__(
        self, count: Callable[[], int], per_second: float = 2000.0, window: float = 0.5
    ) -> None:
        self.count = count
        self.per_second = per_second
        # The rate is measured over at least this long: the flusher may tick twice in a row
        # (a seal wakes it), and a rate over a millisecond says nothing.
        self.window = window
        self._last = (time.monotonic(), count())
        self._bursting = False

    def __call__(self) -> bool:
        now, n = time.monotonic(), self.count()
        then, before = self._last
        if now - then >= self.window:
            self._bursting = (n - before) / (now - then) >= self.per_second
            self._last = (now, n)
        return self._bursting


class Flusher:
    """Background thread: every ``interval`` seconds, and whenever a write seals a segment,
    rotate by age and load sealed segments.

    It loads in SCHED_IDLE while it keeps up, and at normal priority while the oldest waiting
    segment holds events older than ``catch_up_after`` seconds: serving keeps the machine
    until the analytics would fall that far behind, and the backlog on disk stays bounded.
    A failing store leaves the segments in place; they are retried on the next tick.
    """

    def __init__(
        self,
        spool: Spool,
        store: EventStore,
        *,
        interval: float = 1.0,
        catch_up_after: float = 2.0,
        defer: Callable[[], bool] | None = None,
        max_defer: float = 30.0,
    ) -> None:
        self.spool = spool
        self.store = store
        self.interval = interval
        self.catch_up_after = catch_up_after
        # While ``defer()`` says the foreground is in a burst (redirects), loads wait on disk,
        # for at most ``max_defer`` seconds; see ClickBurst.
        self.defer = defer
        self.max_defer = max_defer
        self.deferred_ticks = 0
        self.last_error: BaseException | None = None
        self._idle: bool | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="liebian-spool-flusher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _use_idle_priority(self, idle: bool) -> None:
        if idle != self._idle:
            _set_idle_priority(idle)
            self._idle = idle

    def _tick(self) -> None:
        self.spool.maybe_rotate()
        behind = self.spool.oldest_sealed_age()
        # Sampled every tick, so its rate covers the time since the previous one.
        bursting = self.defer is not None and self.defer()
        if bursting and behind is not None and behind < self.max_defer:
            self.deferred_ticks += 1
            return
        self._use_idle_priority(behind is None or behind < self.catch_up_after)
        self.spool.load_sealed(lambda path, name: self.store.insert_ndjson(path, segment=name))

    def _run(self) -> None:
        _name_os_thread("liebian-flusher")
        self._use_idle_priority(True)
        sealed = self.spool.segment_sealed
        while not self._stop.is_set():
            sealed.wait(self.interval)  # a tick, or a segment filled up meanwhile
            sealed.clear()
            if self._stop.is_set():
                break
            try:
                self._tick()
                self.last_error = None
            except Exception as exc:  # keep the thread alive; the data stays spooled
                self.last_error = exc

    def stop(self, *, final_flush: bool = True) -> None:
        self._stop.set()
        self.spool.segment_sealed.set()  # wake it now rather than at the next tick
        self._thread.join()
        if final_flush:
            self.spool.flush_once(self.store)
