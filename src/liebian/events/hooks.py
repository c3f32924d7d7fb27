"""Event hooks: side effects of some events (conversions), applied after the 202 by a worker.

``POST /api/v1/events`` answers once the events are in the spool; it never waits for the OLTP
database. The events some consumer asked for (campaign conversions: signup, purchase, refund…)
are also appended, in the same request and before the answer, to a second spool of their own
(``<spool>/hooks``): one line per event, so they are as durable as the events themselves.

The :class:`HookWorker` thread reads that spool's sealed segments in order and applies them in
batches: one transaction per batch that

1. finds the events not applied before (a replay after SIGKILL, a client resending an
   ``event_id``) by their marker rows (``event_hook_applied``, primary key workspace +
   event_id): on PostgreSQL it inserts the markers first with ``INSERT … ON CONFLICT DO
   NOTHING RETURNING``; on SQLite, whose write lock the transaction holds from its start, it
   looks them up and inserts them at the end (``repository.claim_unapplied``);
2. hands those events, in arrival order, to every registered consumer that wants their name,
   with a memo they share for the batch (``kit.db.batch_memo``: the contact ids one of them
   resolved).

It commits, then deletes the segment. A crash between the commit and the delete replays the
segment and the markers turn it into nothing; a crash before the commit rolls everything
back. So every event is applied exactly once, and the events of one person in the order this
process received them (one worker, segments and lines in order).

The thread paces itself: after each batch it rests in proportion to the CPU the batch took,
so that it uses at most ``MAX_SHARE`` of a core and the request threads of the same process
keep theirs (the GIL) — while it keeps up. Once the events it applies have waited more than
``CATCH_UP_AFTER`` it applies on without resting until it has caught up (decision 0026). Markers are kept ``hook_marker_days`` (7 by default) and then deleted
in small chunks (decision 0026): long past the only replay the spool
itself makes (a segment applied but not yet deleted when the process died, replayed at the
next start) and past any sensible client retry of an ``event_id``.

Consumers register in a :class:`HookRegistry` (``app/wiring.py``) and run in that order:
people (contacts), campaigns, journeys. A consumer gets the session of the batch's
transaction and must not commit; it should look things up set-based for the whole batch.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import orjson
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from liebian.events import repository
from liebian.events.schemas import EventIn
from liebian.events.spool import Spool, _name_os_thread
from liebian.kit.clock import utcnow
from liebian.kit.db import open_batch_memo, raise_sqlite_cache, session_scope

log = logging.getLogger("liebian.events.hooks")

# Conversions are sealed and applied quickly: a campaign should show a signup within a
# second or so, far inside the 5 s the product promises.
SEGMENT_AGE = 0.25
SEGMENT_QUIET = 0.05
WORKER_INTERVAL = 0.1
# Events per transaction: large enough that the per-batch queries are amortized, small enough
# that the SQLite writer lock is never held for long (a few tens of ms).
BATCH_SIZE = 2_000
# Page cache of a batch's SQLite connection while the batch runs (KiB; SQLite's default is
# 2 MB): a batch of 2,000 conversions writes ~10,000 pages of 4 KiB (decision 0057).
BATCH_CACHE_KIB = 64 * 1024
# The worker shares the serving process (and its GIL) with the request threads: after each
# batch it rests so that its CPU stays under this share of one core (a batch of 2,000
# conversions is ~0.2 s of CPU: it then rests ~0.2 s). At ~100 µs per conversion that still
# applies ~5,000 conversions a second, well above the realistic mix at 100k events/s.
MAX_SHARE = 0.5
MAX_REST = 1.0  # seconds, at most, after one batch
# ... but only while it keeps up: when the newest event of the batch it just applied had
# waited longer than this, a backlog is building (a burst of conversions) and it applies on
# without resting, as the events' flusher leaves SCHED_IDLE when it falls behind. Resting
# then only added lag: at ~150 µs per conversion the worker, paced to half a core and
# sharing two cores with the request threads, applied ~800/s while 2,800/s arrived
# (issue 10: p50 27 s behind; decision 0026).
CATCH_UP_AFTER = 1.0  # seconds
# Markers of applied events are kept this long by default (Settings.hook_marker_days), and
# pruned in chunks of PRUNE_CHUNK rows every PRUNE_INTERVAL seconds (decision 0026).
MARKER_DAYS = 7.0
PRUNE_INTERVAL = 600.0
PRUNE_CHUNK = 2_000
PRUNE_SLICE = 25  # chunks per pass of the thread; another slice PRUNE_AGAIN s later if more
PRUNE_AGAIN = 2.0


@dataclass(frozen=True, slots=True)
class HookEvent:
    """One accepted event as a consumer sees it."""

    workspace_id: str
    event_id: str
    event: str
    ts: datetime
    received_at: datetime
    user_id: str | None = None
    visitor_id: str | None = None
    revenue: int | None = None
    currency: str | None = None
    properties: dict[str, Any] | None = None

    @classmethod
    def from_line(cls, line: bytes, times: dict[str, datetime] | None = None) -> HookEvent:
        """The event of a hooks spool line. ``times``: texts parsed already, shared by the
        lines of a batch (a request's events share their receipt time, and their ``ts`` when
        the server gave it)."""
        record = orjson.loads(line)
        if times is None:
            times = {}
        ts, received = record["ts"], record["hook_received_at"]
        return cls(
            record["workspace_id"],
            record["event_id"],
            record["event"],
            times.get(ts) or _parse_time(ts, times),
            times.get(received) or _parse_time(received, times),
            record.get("user_id"),
            record.get("visitor_id"),
            record.get("revenue"),
            record.get("currency"),
            record.get("properties"),
        )


def _parse_time(value: str, times: dict[str, datetime] | None = None) -> datetime:
    parsed = datetime.fromisoformat(value)
    parsed = parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    if times is not None:
        times[value] = parsed
    return parsed


class EventConsumer(Protocol):
    """Applies the side effects of some events, a batch at a time, inside the worker's
    transaction (flush, never commit). ``events`` names the event names it wants."""

    name: str
    events: frozenset[str]

    def __call__(self, session: Session, events: Sequence[HookEvent]) -> None: ...


class SelectingConsumer(EventConsumer, Protocol):
    """A consumer that also wants events of any name that ``select`` accepts (contacts: an
    event carrying both a user id and a visitor id). ``select`` runs on the request path for
    each event: it must be cheap. Such a consumer gets every fresh event of a batch and
    picks its own. A consumer whose ``select`` is never true for an event without a given
    key may name it in ``select_needs`` (contacts and journeys: ``user_id``): when every
    selecting consumer names the same key, the request path skips their calls for the events
    that lack it (~0.13 µs of the request thread per mix event, where 92% have no user id)."""

    def select(self, event: EventIn) -> bool: ...


class HookRegistry:
    def __init__(self) -> None:
        self._consumers: list[EventConsumer] = []
        # The union of the wanted names: the request path tests each event against it.
        self.names: frozenset[str] = frozenset()
        self.selectors: tuple[Callable[[EventIn], bool], ...] = ()
        # The key without which no selector selects (SelectingConsumer), or None.
        self.selectors_need: str | None = None
        self._needs: list[str | None] = []

    def register(self, consumer: EventConsumer) -> None:
        if any(c.name == consumer.name for c in self._consumers):
            raise ValueError(f"an event consumer named {consumer.name!r} is registered already")
        self._consumers.append(consumer)
        self.names = self.names | consumer.events
        select = getattr(consumer, "select", None)
        if select is not None:
            self.selectors = (*self.selectors, select)
            self._needs.append(getattr(consumer, "select_needs", None))
            common = set(self._needs)
            self.selectors_need = common.pop() if len(common) == 1 else None

    @property
    def consumers(self) -> tuple[EventConsumer, ...]:
        return tuple(self._consumers)


class HookQueue:
    """The request-side half: writes the events some consumer wants to the hooks spool."""

    def __init__(self, registry: HookRegistry, spool: Spool) -> None:
        self.registry = registry
        self.spool = spool

    def lines(self, workspace_id: str, events: Iterable[EventIn], now: datetime) -> bytes:
        """The hooks spool lines of the wanted ones among ``events`` (completed: each has its
        event_id and ts), for one write after the events' own, before the answer."""
        names, selectors = self.registry.names, self.registry.selectors
        if not names and not selectors:
            return b""
        need = self.registry.selectors_need
        if not selectors:
            chosen = [e for e in events if e["event"] in names]
        elif need is not None and len(selectors) == 2:  # contacts' and journeys' today
            first, second = selectors
            chosen = [
                e
                for e in events
                if e["event"] in names or (e.get(need) and (first(e) or second(e)))
            ]
        elif len(selectors) == 1:  # no generator per event on the hot path
            select = selectors[0]
            chosen = [e for e in events if e["event"] in names or select(e)]
        elif len(selectors) == 2:  # contacts' and journeys' today: unrolled too
            # any() over a generator cost ~0.8 µs of the request thread per event (a 10,000-
            # event mix batch: 1.32 against 0.50 µs per event; docs/benchmarks.md, session 8).
            first, second = selectors
            chosen = [e for e in events if e["event"] in names or first(e) or second(e)]
        else:
            chosen = [e for e in events if e["event"] in names or any(f(e) for f in selectors)]
        if not chosen:
            return b""
        head = {"workspace_id": workspace_id, "hook_received_at": now.astimezone(UTC).isoformat()}
        dumps, newline = orjson.dumps, orjson.OPT_APPEND_NEWLINE
        return b"".join(dumps({**e, **head}, option=newline) for e in chosen)


class HookWorker:
    """Applies the hooks spool to the registered consumers (see the module docstring)."""

    def __init__(
        self,
        queue: HookQueue,
        sessions: sessionmaker[Session],
        *,
        interval: float = WORKER_INTERVAL,
        batch_size: int = BATCH_SIZE,
        max_share: float = MAX_SHARE,
        marker_days: float = MARKER_DAYS,
    ) -> None:
        self.queue = queue
        self.sessions = sessions
        self.interval = interval
        self.batch_size = batch_size
        self.max_share = max_share
        self.marker_days = marker_days
        self.rested_seconds = 0.0  # time the thread rested to leave the requests their CPU
        self.catch_up_batches = 0  # batches after which it did not rest: it was behind
        self._newest_received: datetime | None = None  # of the last batch applied
        self.pruned = 0  # markers deleted since start
        self._last_prune = float("-inf")
        self.applied = 0  # events applied (markers written) since start
        self.batches = 0
        self.busy_seconds = 0.0  # wall time spent applying batches
        self.last_error: BaseException | None = None
        # Reentrant: whoever holds the worker paused may still drain by hand (tests, tools).
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def spool(self) -> Spool:
        return self.queue.spool

    # -- one pass ------------------------------------------------------------------------

    def run_once(self, *, pace: bool = False) -> int:
        """Seal the open segment if it is old or quiet, apply every sealed one; events applied.
        ``pace`` (the thread): rest after each batch to stay under ``max_share`` of a core."""
        with self._lock:
            self.spool.maybe_rotate()
            return self._apply_sealed(pace=pace)

    def drain(self) -> int:
        """Apply everything spooled so far (tests, shutdown); events applied."""
        with self._lock:
            self.spool.seal()
            return self._apply_sealed()

    def prune_markers(self, now: datetime | None = None, *, max_chunks: int | None = None) -> int:
        """Delete the markers older than ``marker_days`` (a chunk per transaction), at most
        ``max_chunks`` chunks; how many. Nothing when ``marker_days`` is 0 (kept forever)."""
        if self.marker_days <= 0:
            return 0
        before = (now or utcnow()) - timedelta(days=self.marker_days)
        pruned = chunks = 0
        while max_chunks is None or chunks < max_chunks:
            with self._lock, session_scope(self.sessions) as session:
                n = repository.prune_applied(session, before, PRUNE_CHUNK)
            pruned += n
            chunks += 1
            if n < PRUNE_CHUNK or self._stop.is_set():
                break
        self.pruned += pruned
        return pruned

    def _maybe_prune(self) -> None:
        """A bounded slice of pruning between passes, so a large backlog of expired markers
        (the first start after an upgrade) never holds up the conversions for long."""
        if time.monotonic() - self._last_prune >= PRUNE_INTERVAL:
            self._last_prune = time.monotonic()
            pruned = self.prune_markers(max_chunks=PRUNE_SLICE)
            if pruned >= PRUNE_SLICE * PRUNE_CHUNK:  # more left: the next slice soon
                self._last_prune -= PRUNE_INTERVAL - PRUNE_AGAIN

    def behind(self, now: datetime | None = None) -> bool:
        """Whether the newest event of the last batch waited more than CATCH_UP_AFTER."""
        newest = self._newest_received
        if newest is None:
            return False
        return ((now or utcnow()) - newest).total_seconds() > CATCH_UP_AFTER

    def _rest(self, cpu: float) -> None:
        """Leave the request threads the GIL and the core for a while after a batch that
        took ``cpu`` seconds of this thread's CPU (time slicing; see MAX_SHARE) — unless
        the worker is behind (CATCH_UP_AFTER): then the lag matters more."""
        if self.behind():
            self.catch_up_batches += 1
            return
        if 0 < self.max_share < 1 and cpu > 0:
            pause = min(cpu * (1 / self.max_share - 1), MAX_REST)
            self.rested_seconds += pause
            self._stop.wait(pause)

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Hold the worker between two batches (maintenance, tests); requests still spool."""
        with self._lock:
            yield

    def _apply_sealed(self, *, pace: bool = False) -> int:
        """Each sealed segment in order, deleted once applied. A failure (the database away)
        stops the pass: later segments wait, so a person's later events never overtake."""
        applied = 0
        for path in self.spool.sealed_segments():
            lines = [line for line in path.read_bytes().split(b"\n") if line]
            for start in range(0, len(lines), self.batch_size):
                cpu = time.thread_time()
                applied += self._apply_lines(lines[start : start + self.batch_size], path)
                if pace:
                    self._rest(time.thread_time() - cpu)
            path.unlink()
        return applied

    def _apply_lines(self, lines: list[bytes], path: Path) -> int:
        events: list[HookEvent] = []
        kept: list[bytes] = []
        times: dict[str, datetime] = {}
        for line in lines:
            try:
                events.append(HookEvent.from_line(line, times))
            except (ValueError, KeyError, TypeError) as exc:
                self._quarantine(path, line, exc)
            else:
                kept.append(line)
        if not events:
            return 0
        self._newest_received = max(e.received_at for e in events)
        try:
            return self._apply_batch(events)
        except (OperationalError, InterfaceError):
            raise  # the database is away or locked: keep the segment, retry next tick
        except Exception:
            if len(events) == 1:
                raise
            log.exception("a batch of %d hook events failed; applying them one by one", len(events))
        # Isolate what fails (a bug one event triggers) so it cannot block the others; each
        # event still runs after the earlier ones of its person.
        applied = 0
        for event, line in zip(events, kept, strict=True):
            try:
                applied += self._apply_batch([event])
            except (OperationalError, InterfaceError):
                raise
            except Exception as exc:
                self._quarantine(path, line, exc)
        return applied

    def _apply_batch(self, events: list[HookEvent]) -> int:
        started = time.perf_counter()
        now = utcnow()
        with session_scope(self.sessions) as session:
            open_batch_memo(session)  # lookups the consumers share (kit/db.py)
            # A batch touches tens of MB of contacts, markers and conversions pages (decision
            # 0057): on SQLite its connection keeps them while the batch runs.
            raise_sqlite_cache(session, BATCH_CACHE_KIB)
            fresh, markers = repository.claim_unapplied(session, events, now)
            for consumer in self.queue.registry.consumers:
                if getattr(consumer, "select", None) is not None:
                    wanted = fresh  # it picks its own (see SelectingConsumer)
                else:
                    wanted = [e for e in fresh if e.event in consumer.events]
                if wanted:
                    consumer(session, wanted)
            if fresh:
                # The markers say when the effects were made, not when the batch began.
                repository.settle_applied(session, markers, now, utcnow())
        self.applied += len(fresh)
        self.batches += 1
        self.busy_seconds += time.perf_counter() - started
        return len(fresh)

    def _quarantine(self, path: Path, line: bytes, exc: BaseException) -> None:
        """Keep an event no consumer could apply beside the spool, with the reason, and go on."""
        log.error("hook event from %s not applied, kept in failed.ndjson: %r", path.name, exc)
        try:
            kept: dict[str, Any] = {"event": orjson.loads(line)}
        except orjson.JSONDecodeError:
            kept = {"line": line.decode("utf-8", "replace")}
        record = orjson.dumps({**kept, "error": repr(exc)})
        with open(self.spool.directory / "failed.ndjson", "ab") as fh:
            fh.write(record + b"\n")

    # -- thread --------------------------------------------------------------------------

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="liebian-hooks", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        _name_os_thread("liebian-hooks")
        sealed = self.spool.segment_sealed
        while not self._stop.is_set():
            sealed.wait(self.interval)
            sealed.clear()
            if self._stop.is_set():
                break
            try:
                self.run_once(pace=True)
                self._maybe_prune()
                self.last_error = None
            except Exception as exc:  # the events stay spooled; retried at the next tick
                if self.last_error is None or repr(exc) != repr(self.last_error):
                    log.exception("applying hook events failed; retrying")
                self.last_error = exc
                self._stop.wait(1.0)

    def stop(self, *, final_drain: bool = True) -> None:
        self._stop.set()
        self.spool.segment_sealed.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if final_drain:
            with contextlib.suppress(Exception):  # left on disk; the next start applies it
                self.drain()


def open_hooks(spool_dir: Path, registry: HookRegistry) -> HookQueue:
    """The hooks spool lives in its own directory beside (inside) the events' spool."""
    spool = Spool(spool_dir / "hooks", max_segment_age=SEGMENT_AGE, max_segment_quiet=SEGMENT_QUIET)
    return HookQueue(registry, spool)
