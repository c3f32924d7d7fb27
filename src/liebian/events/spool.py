"""Durable local spool: append-only NDJSON segment files in one directory.

Why this shape: the redirect answers a 302 only after its click is recorded, and must not
wait on a database. ``append_line`` is one ``os.write`` to an ``O_APPEND`` descriptor: once it
returns, the bytes are in the kernel's page cache, which survives the death of the process
(SIGKILL, crash); only a machine crash can lose them, which ``fsync_interval`` bounds.

Layout: the segment being written is ``<name>.open``; sealing renames it to ``<name>.ndjson``
(rename is atomic). A segment is created by its first write, so the time in its name is when
its oldest event arrived (what the flusher's deferral and catch-up measure), not when an idle
spool last rotated. Names sort by that time and embed the pid, so a name is never reused
after a restart: the store records loaded segment names, and a reused name would be skipped.
The flusher loads each sealed segment in one batch, and deletes it only after the store
committed; if the process dies between commit and delete, the replay finds the name already
recorded (DuckDB: same transaction) or drops the rows by event_id (ClickHouse).

One process owns a spool directory at a time (an flock on ``.lock``); give each server
process its own directory, the next start of that process recovers what it left.

A write that fails (disk full) is cut back off the segment before the error is raised, so a
segment never holds a torn line in its middle. A segment the store still refuses — a torn
line from elsewhere, a line that is not a JSON object — is quarantined: moved to
``quarantine/``, its good lines written to a new segment that is loaded like any other, the
fact logged and counted (``Spool.health``). It never holds up the segments after it
(docs/decisions/0015).
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from liebian.events.store.base import EventStore, InsertResult

log = logging.getLogger("liebian.spool")

_OPEN = ".open"
_SEALED = ".ndjson"
QUARANTINE = "quarantine"
# A segment whose lines all parse but that the store refused this many times in a row, while
# other segments loaded (so the store itself is up), is quarantined whole.
MAX_SEGMENT_FAILURES = 3


# DuckDB stores a table's rows in groups of this many (its default row group size).
ROW_GROUP_ROWS: Final = 122_880


class SpoolLocked(RuntimeError):
    """Another live process owns this spool directory."""


class SpoolWriteError(OSError):
    """An append did not reach the spool (disk full, file too large…); nothing of it was kept,
    so the request must not be acknowledged."""


class SegmentLoadError(RuntimeError):
    """Some sealed segments could not be loaded; they stay on disk and are retried."""


@dataclass(frozen=True, slots=True)
class SpoolHealth:
    """What an operator needs to see about the spool (/readyz, /metrics)."""

    sealed_segments: int
    backlog_bytes: int
    oldest_age: float | None
    quarantined_segments: int
    quarantined_total: int
    write_errors: int
    failing_segments: int
    last_error: str | None


def _strict_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _record(text: bytes) -> bool:
    """Whether one line is a JSON object the store can read."""
    try:
        value = json.loads(text, parse_constant=_strict_constant)
    except ValueError:
        return False
    return isinstance(value, dict)


def _after_lines(data: bytes, n: int, total: int) -> int:
    """The offset just after the ``n``-th of ``data``'s ``total`` lines (0 < n < total),
    counted from whichever end is nearer."""
    if n <= total - n or not data.endswith(b"\n"):
        at = 0
        for _ in range(n):
            at = data.index(b"\n", at) + 1
        return at
    at = len(data) - 1  # the last line's newline
    for _ in range(total - n):
        at = data.rindex(b"\n", 0, at)
    return at + 1


def salvage_lines(data: bytes) -> tuple[list[bytes], int]:
    """The good records of a damaged segment, and how many lines were beyond saving.

    A write cut short and followed by another leaves ``<torn part><whole record>`` on one
    line: the record after the tear is kept (the first suffix starting with ``{"`` that is a
    whole JSON object). Blank lines are dropped silently.
    """
    good: list[bytes] = []
    bad = 0
    for line in data.split(b"\n"):
        if not line.strip():
            continue
        if _record(line):
            good.append(line + b"\n")
            continue
        start = line.find(b'{"', 1)
        while start != -1 and not _record(line[start:]):
            start = line.find(b'{"', start + 1)
        if start == -1:
            bad += 1
        else:
            good.append(line[start:] + b"\n")
            bad += 1  # the torn part before it
    return good, bad


class Spool:
    def __init__(
        self,
        directory: str | Path,
        *,
        max_segment_bytes: int = 32 * 1024 * 1024,
        max_segment_lines: int = ROW_GROUP_ROWS,
        max_segment_age: float = 1.0,
        max_segment_quiet: float = 0.2,
        fsync_interval: float | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.directory = Path(directory)
        # Wall clock for segment names and ages (tests pass their own to be deterministic).
        self.clock = clock
        self.directory.mkdir(parents=True, exist_ok=True)
        self.max_segment_bytes = max_segment_bytes
        # DuckDB stores rows in groups of 122,880 (ROW_GROUP_ROWS). A load that is not whole
        # groups leaves a partial one that the next load's checkpoint compresses again
        # (150k-event loads: ~4.0-4.6 µs per event all told against ~3.2-3.6 at 120k,
        # docs/decisions/0010); loads of whole groups are written as they are. A write that
        # would take a segment past this many events (lines) fills it exactly and starts the
        # next with the rest (decision 0053), so busy segments are one row group each.
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
        self.quarantined_total = 0
        self.write_errors = 0
        self.last_write_error_at: float | None = None  # time.monotonic()
        self.last_error: str | None = None
        # Segments the store refused: name -> [failed loads, self._loads at the first one].
        self._failures: dict[str, list[int]] = {}
        # Called with each loaded segment's path before it is deleted (see _after_load).
        self.after_load: list[Callable[[Path], None]] = []
        # Called by the writer that filled a segment, after the spool's lock is released:
        # the flusher checks there whether it is behind, from a thread that is running
        # (Flusher.nudge), since a loader starved in SCHED_IDLE cannot check for itself.
        self.on_sealed: list[Callable[[], None]] = []
        self._loads = 0
        # Lines of the segments this process sealed and has not loaded yet, by name: what
        # load_sealed needs to group them (a recovered segment is not in it: loaded alone).
        self._sealed_lines: dict[str, int] = {}
        self._recover()
        # No segment until the first write (see the module docstring): -1 means none open.
        self._fd = -1
        self._path: Path | None = None
        self._size = 0
        self._lines = 0
        self._opened_at = 0.0
        self._written_at = 0.0
        self._last_sync = time.monotonic()

    # -- hot path ------------------------------------------------------------------------

    def append_line(self, line: bytes) -> None:
        """Append pre-serialized NDJSON (one line or a request's lines, ending with b"\\n")
        in one write, or two when it fills the open segment: the lines that fit complete it
        and the rest open the next, so that busy segments hold exactly ``max_segment_lines``
        lines (whole DuckDB row groups). Either all of it is kept or none of it."""
        lines = line.count(b"\n")
        sealed = False
        with self._lock:
            if self._lines and self._lines + lines > self.max_segment_lines:
                room = self.max_segment_lines - self._lines
                if room > 0:
                    self._split_locked(line, room, lines)
                    line, lines = b"", 0
                else:
                    self._rotate_locked()
                sealed = True
            if line:
                if self._fd < 0:
                    self._open_segment()
                self._write_locked(self._fd, line, self._size)
                self._size += len(line)
                self._lines += lines
                self._written_at = time.monotonic()
            if self._size >= self.max_segment_bytes:
                self._rotate_locked()
                sealed = True
        if sealed:
            for hook in self.on_sealed:
                hook()

    def _write_locked(self, fd: int, data: bytes, keep: int) -> None:
        """Write all of ``data``; if that fails, cut the file back to ``keep`` bytes (part of
        it may be on disk: no torn line may sit in the middle of a segment once later writes
        succeed) and raise :class:`SpoolWriteError`."""
        view = memoryview(data)
        try:
            while view:  # regular files write fully; the loop is for ENOSPC-adjacent cases
                written = os.write(fd, view)
                view = view[written:]
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, keep)
            self.write_errors += 1
            self.last_write_error_at = time.monotonic()
            raise SpoolWriteError(exc.errno, f"spool write failed: {exc.strerror}") from exc

    def _split_locked(self, line: bytes, room: int, lines: int) -> None:
        """Write the first ``room`` of ``line``'s lines to the open segment and the rest to a
        new one; seal the full one only once both writes are done. If the second fails the
        first is cut off again, so the request leaves nothing behind (it is not answered)."""
        cut = _after_lines(line, room, lines)
        full_fd, full_path, full_size = self._fd, self._path, self._size
        full_lines, full_opened = self._lines, self._opened_at
        self._write_locked(full_fd, line[:cut], full_size)
        self._open_segment()
        try:
            self._write_locked(self._fd, line[cut:], 0)
        except SpoolWriteError:
            with contextlib.suppress(OSError):
                os.ftruncate(full_fd, full_size)
            os.close(self._fd)
            assert self._path is not None
            with contextlib.suppress(OSError):
                self._path.unlink()
            self._fd, self._path, self._size = full_fd, full_path, full_size
            self._lines, self._opened_at = full_lines, full_opened
            raise
        self._seal(full_fd, full_path, full_size + cut, self.max_segment_lines)
        self._size, self._lines = len(line) - cut, lines - room
        self._written_at = time.monotonic()

    def append(self, record: bytes | Mapping[str, Any]) -> None:
        if isinstance(record, bytes):
            self.append_line(record if record.endswith(b"\n") else record + b"\n")
        else:
            line = json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"
            self.append_line(line.encode())

    # -- segments ------------------------------------------------------------------------

    def _new_name(self) -> str:
        self._seq += 1
        return f"seg-{int(self.clock() * 1e9):020d}-{os.getpid()}-{self._seq:06d}"

    def _open_segment(self) -> None:
        self._path = self.directory / (self._new_name() + _OPEN)
        self._fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._size = 0
        self._lines = 0
        self._opened_at = time.monotonic()

    def _rotate_locked(self) -> None:
        """Seal the open segment; the next write opens a new one."""
        old_fd, old_path, old_size, old_lines = self._fd, self._path, self._size, self._lines
        if old_fd < 0:
            return
        self._fd, self._path, self._size, self._lines = -1, None, 0, 0
        assert old_path is not None
        self._seal(old_fd, old_path, old_size, old_lines)

    def _seal(self, fd: int, path: Path | None, size: int, lines: int) -> None:
        if self.fsync_interval is not None:
            os.fsync(fd)
        os.close(fd)
        assert path is not None
        if size == 0:
            path.unlink()
        else:
            path.rename(path.with_suffix(_SEALED))
            self._sealed_lines[path.name.removesuffix(_OPEN)] = lines
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
            if (
                self.fsync_interval is not None
                and self._fd >= 0
                and now - self._last_sync >= self.fsync_interval
            ):
                os.fsync(self._fd)
                self._last_sync = now

    def sealed_segments(self) -> list[Path]:
        return sorted(self.directory.glob("seg-*" + _SEALED))

    def oldest_sealed_age(self) -> float | None:
        """Seconds since the first write to the oldest sealed segment, which is how long its
        oldest event has waited; None when nothing is sealed. Names start with that time."""
        for path in self.sealed_segments():  # sorted, oldest first
            try:
                created = int(path.name.split("-")[1]) / 1e9
            except (IndexError, ValueError):  # not a name this class wrote: its last write
                try:
                    created = path.stat().st_mtime
                except FileNotFoundError:  # loaded meanwhile by a reader draining the spool
                    continue
            return max(0.0, self.clock() - created)
        return None

    def quarantined_segments(self) -> list[Path]:
        directory = self.directory / QUARANTINE
        return sorted(directory.glob("seg-*")) if directory.is_dir() else []

    def health(self) -> SpoolHealth:
        sealed = self.sealed_segments()
        size = 0
        for path in sealed:
            with contextlib.suppress(FileNotFoundError):
                size += path.stat().st_size
        return SpoolHealth(
            sealed_segments=len(sealed),
            backlog_bytes=size + self._size,
            oldest_age=self.oldest_sealed_age(),
            quarantined_segments=len(self.quarantined_segments()),
            quarantined_total=self.quarantined_total,
            write_errors=self.write_errors,
            failing_segments=len(self._failures),
            last_error=self.last_error,
        )

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

    def load_sealed(
        self,
        callback: Callable[[Path, str], object],
        *,
        group: Callable[[list[tuple[Path, str]]], object] | None = None,
        group_lines: int = 0,
        group_bytes: int = 0,
    ) -> int:
        """Hand each sealed segment to ``callback`` and delete it after; one caller at a time.

        With ``group``, consecutive segments this process sealed go to it together, as many as
        fit in ``group_lines`` lines and ``group_bytes`` bytes (one load for several: what a
        load costs beside its rows is paid once); if that fails, each of them is handed to
        ``callback`` alone, so a failing group never holds up or loses a segment.

        A segment that fails stays for the next pass and does not hold up the ones after it;
        a damaged one is quarantined (``_quarantine``). Raises :class:`SegmentLoadError` after
        the pass if some segment is still waiting on a failure, so callers see it."""
        done = 0
        failed: list[str] = []
        alone: set[str] = set()  # segments of a failed group: one by one from then on
        with self._drain_lock:
            pending = self.sealed_segments()
            while pending:
                path = pending.pop(0)
                name = path.name.removesuffix(_SEALED)
                if group is not None and name not in alone:
                    members = self._group(path, name, pending, alone, group_lines, group_bytes)
                    if len(members) > 1:
                        del pending[: len(members) - 1]
                        try:
                            group(members)
                        except Exception as exc:
                            self.last_error = f"{name}: {type(exc).__name__}: {exc}"
                            alone.update(n for _, n in members)
                            pending[0:0] = [p for p, _ in members]
                            continue
                        for member, member_name in members:
                            self._loaded(member, member_name)
                            done += 1
                        continue
                try:
                    callback(path, name)
                except Exception as exc:
                    self.last_error = f"{name}: {type(exc).__name__}: {exc}"
                    salvaged = self._on_failure(path, name, exc)
                    if salvaged is not None:
                        pending.insert(0, salvaged)
                    elif path.exists():
                        failed.append(self.last_error)
                    continue
                self._loaded(path, name)
                done += 1
            if not failed:
                self.last_error = None
        if failed:
            raise SegmentLoadError("; ".join(failed))
        return done

    def _loaded(self, path: Path, name: str) -> None:
        """A segment the store committed: hand it to the hooks, then delete it."""
        self._after_load(path)
        path.unlink()
        self._failures.pop(name, None)
        self._sealed_lines.pop(name, None)
        self._loads += 1

    def _group(
        self,
        path: Path,
        name: str,
        pending: list[Path],
        alone: set[str],
        max_lines: int,
        max_bytes: int,
    ) -> list[tuple[Path, str]]:
        """``path`` and the segments right after it in ``pending`` that fit with it in
        ``max_lines`` lines and ``max_bytes`` bytes; only segments whose lines are known."""
        members = [(path, name)]
        lines = self._sealed_lines.get(name)
        if lines is None:
            return members
        try:
            size = path.stat().st_size
            for following in pending:
                other = following.name.removesuffix(_SEALED)
                more = self._sealed_lines.get(other)
                if more is None or other in alone:
                    break
                extra = following.stat().st_size
                if lines + more > max_lines or size + extra > max_bytes:
                    break
                members.append((following, other))
                lines, size = lines + more, size + extra
        except FileNotFoundError:
            return members[:1]
        return members

    def _after_load(self, path: Path) -> None:
        """Hand a loaded segment to the ``after_load`` hooks before it is deleted (segments/
        reads the persons in it to keep membership current). A failing hook is logged and not
        retried: the store has the rows, and the hook's owner reconciles on its own."""
        for hook in self.after_load:
            try:
                hook(path)
            except Exception:
                log.exception("spool after-load hook failed for %s", path.name)

    def _on_failure(self, path: Path, name: str, exc: Exception) -> Path | None:
        """Decide about a segment the store refused: quarantine it if it is damaged, or if it
        keeps failing while others load; otherwise leave it for the next pass. Returns the
        segment holding its salvaged lines, if one was written."""
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        good, bad = salvage_lines(data)
        if bad:
            return self._quarantine(path, name, good, f"{bad} damaged line(s)", exc)
        record = self._failures.setdefault(name, [0, self._loads])
        record[0] += 1
        # Quarantined whole only when the store itself works (another segment loaded since
        # this one first failed): a store that is down must not empty the spool.
        if record[0] >= MAX_SEGMENT_FAILURES and self._loads > record[1]:
            return self._quarantine(path, name, [], f"refused {record[0]} times", exc)
        if record[0] in (1, 10, 100) or record[0] % 1000 == 0:  # not once per tick
            log.warning("spool segment %s not loaded (attempt %d): %s", name, record[0], exc)
        return None

    def _quarantine(
        self, path: Path, name: str, good: list[bytes], why: str, exc: Exception
    ) -> Path | None:
        directory = self.directory / QUARANTINE
        directory.mkdir(exist_ok=True)
        salvaged: Path | None = None
        if good:
            # A new name (never recorded by the store), sorting right after the original.
            salvaged = self.directory / f"{name}-salvaged{_SEALED}"
            temp = salvaged.with_suffix(".tmp")
            temp.write_bytes(b"".join(good))
            os.replace(temp, salvaged)
        os.replace(path, directory / path.name)
        self._failures.pop(name, None)
        self._sealed_lines.pop(name, None)
        self.quarantined_total += 1
        log.error(
            "spool segment %s quarantined (%s; %d good line(s) kept for loading): %s",
            name,
            why,
            len(good),
            exc,
        )
        return salvaged

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
            self._rotate_locked()
        os.close(self._lock_fd)


def _set_idle_priority(idle: bool, thread_id: int | None = None) -> None:
    """Put this thread in Linux's SCHED_IDLE class, or back in the normal one (the policy is
    per thread).

    Loading a segment into the store runs outside the GIL (DuckDB releases it) but still needs
    a core: on a small machine it competed with the event loop and the HTTP runtime and set
    the redirect's tail latency (p99 ~4 ms without the flusher, ~8 ms with it at 1 s ticks,
    docs/benchmarks.md). In SCHED_IDLE the loader runs on cycles nothing else wants and any
    waking request thread preempts it at once. But anything runnable on the machine starves
    it, so under sustained load it fell seconds behind (docs/decisions/0010): the flusher
    leaves the class while it catches up. ``thread_id``: another thread's native id (the
    policy of a starved loader is raised by the writer that sees it behind: Flusher.nudge).
    """
    policy = os.SCHED_IDLE if idle else os.SCHED_OTHER
    # Not Linux, or not permitted (leaving SCHED_IDLE needs CAP_SYS_NICE or RLIMIT_NICE):
    # the thread keeps its policy.
    tid = threading.get_native_id() if thread_id is None else thread_id
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setscheduler(tid, policy, os.sched_param(0))


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
    already, so their load can wait until it passes (bounded by ``Flusher.max_defer`` and by
    the time the waiting segments would take to load, ``Flusher.defer_budget``). The
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

    def also(self, count: Callable[[], int]) -> None:
        """Count another hot path's answers too (the lean participant pages)."""
        previous = self.count
        self.count = lambda: previous() + count()
        self._last = (self._last[0], self.count())

    def __call__(self) -> bool:
        now, n = time.monotonic(), self.count()
        then, before = self._last
        if now - then >= self.window:
            self._bursting = (n - before) / (now - then) >= self.per_second
            self._last = (now, n)
        return self._bursting


# Before any load was timed here: ~50 ns a byte (~30 µs for a 600-byte click line), about
# twice what a click load measured on two busy cores (docs/decisions/0046).
_LOAD_SECONDS_PER_BYTE_PRIOR: Final = 50e-9
_MIN_TIMED_BYTES: Final = 1 << 20
# The most the flusher loads at once when several segments wait: two row groups, within the
# 96 MB pool the serving process gives DuckDB (a staged mix event holds ~210 bytes there, so
# ~52 MB). Each load streams every stored key past the batch (the dedupe) and joins the
# first-touch table; loading 240,000 events at once instead of 120,000 halves that per event
# (in process, 1M mix events onto 2.8M stored: 6.55 against 7.79 µs of CPU an event).
GROUP_LINES: Final = 2 * ROW_GROUP_ROWS
GROUP_BYTES: Final = 64 * 1024 * 1024
LARGE_LOAD_BYTES: Final = 8 * 1024 * 1024
_RATE_WEIGHT: Final = 0.3


class Flusher:
    """Background thread: every ``interval`` seconds, and whenever a write seals a segment,
    rotate by age and load sealed segments.

    It loads in SCHED_IDLE while it keeps up, and at normal priority while the oldest waiting
    segment holds events older than ``catch_up_after`` seconds: serving keeps the machine
    until the analytics would fall that far behind, and the backlog on disk stays bounded.
    A failing store leaves the segments in place; they are retried on the next tick. Every
    failed tick is counted and its error kept (``last_error``, shown by /readyz and
    /metrics) and logged, once per distinct error so a store that stays down does not flood
    the log.
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
        defer_budget: float | None = None,
        load_budget: Callable[[], contextlib.AbstractContextManager[None]] | None = None,
    ) -> None:
        self.spool = spool
        self.load_budget = load_budget
        self.store = store
        self.interval = interval
        self.catch_up_after = catch_up_after
        # While ``defer()`` says the foreground is in a burst (redirects), loads wait on disk,
        # for at most ``max_defer`` seconds; see ClickBurst.
        self.defer = defer
        self.max_defer = max_defer
        # ... and only while the waiting segments can be loaded in at most ``defer_budget``
        # seconds once the burst ends (None: no such bound), estimated from the wall time the
        # loads here took per byte (``load_seconds_per_byte``, a moving average).
        self.defer_budget = defer_budget
        self.load_seconds_per_byte = _LOAD_SECONDS_PER_BYTE_PRIOR
        self.deferred_ticks = 0
        self.last_error: BaseException | None = None
        self.failed_ticks = 0
        self.last_success: float | None = None  # time.time() of the last tick that loaded
        self._logged_error = ""
        self._idle: bool | None = None
        self._thread_id: int | None = None  # the loader's native id, once it runs
        self._priority_lock = threading.Lock()
        self._deferring = False
        self.nudged = 0  # times a writer raised the starved loader's priority (see nudge)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="liebian-spool-flusher", daemon=True)
        spool.on_sealed.append(self.nudge)

    def start(self) -> None:
        self._thread.start()

    def _use_idle_priority(self, idle: bool) -> None:
        if threading.get_native_id() != self._thread_id:
            return  # a tick run by another thread (tests, a final flush) keeps that thread's class
        with self._priority_lock:
            if idle != self._idle:
                _set_idle_priority(idle)
                self._idle = idle

    def nudge(self) -> None:
        """Called by the writer that sealed a segment: if the loader sits in SCHED_IDLE while
        the oldest waiting events are ``catch_up_after`` old, raise it to normal priority now.

        The loader itself decides its class at each tick, but on a busy machine a SCHED_IDLE
        thread gets no core at all, so it cannot run the tick that would raise it: in a
        burst of the realistic mix it sat runnable and idle-class for ~10 s with 8 segments
        (~1M events) waiting, and only began to catch up after the burst (docs/benchmarks.md,
        session 7). The writer that fills a segment is running by definition; a directory
        listing per sealed segment (every ~120,000 events under load) is all it costs. While
        redirects are bursting (``defer``) the loads wait on purpose and nothing changes."""
        if self._idle is not True or self._deferring or self._thread_id is None:
            return
        behind = self.spool.oldest_sealed_age()
        if behind is None or behind < self.catch_up_after:
            return
        with self._priority_lock:
            if self._idle is True:
                _set_idle_priority(False, self._thread_id)
                self._idle = False
                self.nudged += 1

    def catch_up_estimate(self) -> float:
        """Seconds the waiting segments would take to load at the rate loads ran here."""
        size = 0
        for path in self.spool.sealed_segments():
            with contextlib.suppress(FileNotFoundError):
                size += path.stat().st_size
        return size * self.load_seconds_per_byte

    def _may_defer(self, behind: float | None) -> bool:
        if behind is None or behind >= self.max_defer:
            return False
        return self.defer_budget is None or self.catch_up_estimate() < self.defer_budget

    def _load(self, path: Path, name: str) -> None:
        size = path.stat().st_size
        started = time.perf_counter()
        with self._budget_for(size):
            self.store.insert_ndjson(path, segment=name)
        if size >= _MIN_TIMED_BYTES:  # a tiny segment's time is the statements', not its rows'
            rate = (time.perf_counter() - started) / size
            self.load_seconds_per_byte += _RATE_WEIGHT * (rate - self.load_seconds_per_byte)

    def _load_group(self, segments: list[tuple[Path, str]]) -> None:
        size = sum(path.stat().st_size for path, _ in segments)
        started = time.perf_counter()
        with self._budget_for(size):
            self.store.insert_segments(segments)  # type: ignore[attr-defined]
        if size >= _MIN_TIMED_BYTES:
            rate = (time.perf_counter() - started) / size
            self.load_seconds_per_byte += _RATE_WEIGHT * (rate - self.load_seconds_per_byte)

    def _budget_for(self, size: int) -> contextlib.AbstractContextManager[None]:
        if self.load_budget is None or size < LARGE_LOAD_BYTES:
            return contextlib.nullcontext()
        return self.load_budget()

    def _tick(self) -> int:
        """One pass: seal by age or quiet, then load what is sealed; returns segments loaded."""
        self.spool.maybe_rotate()
        behind = self.spool.oldest_sealed_age()
        # Sampled every tick, so its rate covers the time since the previous one.
        bursting = self.defer is not None and self.defer()
        self._deferring = bursting and self._may_defer(behind)
        if self._deferring:
            self.deferred_ticks += 1
            return 0
        self._use_idle_priority(behind is None or behind < self.catch_up_after)
        if hasattr(self.store, "insert_segments"):
            # Waiting segments are loaded two row groups at a time (decision 0053).
            return self.spool.load_sealed(
                self._load, group=self._load_group, group_lines=GROUP_LINES, group_bytes=GROUP_BYTES
            )
        return self.spool.load_sealed(self._load)

    def _run(self) -> None:
        _name_os_thread("liebian-flusher")
        self._thread_id = threading.get_native_id()
        self._use_idle_priority(True)
        sealed = self.spool.segment_sealed
        loaded = 0
        while not self._stop.is_set():
            if not loaded:
                sealed.wait(self.interval)  # a tick, or a segment filled up meanwhile
            # After a pass that loaded something, the next one starts at once: a segment
            # that went quiet while the loads ran (the end of a burst) is sealed and loaded
            # now, not an interval later.
            sealed.clear()
            if self._stop.is_set():
                break
            loaded = 0
            try:
                loaded = self._tick()
            except Exception as exc:  # keep the thread alive; the data stays spooled
                self.last_error = exc
                self.failed_ticks += 1
                text = f"{type(exc).__name__}: {exc}"
                if text != self._logged_error:
                    log.error("spool flush failed (retried every tick): %s", text)
                    self._logged_error = text
            else:
                if self.last_error is not None:
                    log.warning("spool flush recovered after %d failed tick(s)", self.failed_ticks)
                self.last_error = None
                self._logged_error = ""
                self.last_success = time.time()

    def stop(self, *, final_flush: bool = True) -> None:
        self._stop.set()
        self.spool.segment_sealed.set()  # wake it now rather than at the next tick
        self._thread.join()
        if final_flush:
            self.spool.flush_once(self.store)
