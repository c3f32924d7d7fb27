"""Keeping segments and rule tags current.

``MembershipKeeper`` is one background thread fed by three streams:

- the spool's after-load hook: for each batch the store just took, the (workspace, event,
  person) triples in it, read by an in-memory DuckDB straight from the NDJSON file (no GIL,
  no events in Python objects);
- the bus topics ``contact.tags_changed`` and ``contact.attributes_changed``;
- ``rebuild_all`` (the scheduler's periodic job, ``liebian jobs run``).

Queued work is merged per workspace, then only the affected contacts are re-evaluated, and
only against the segments and rule tags whose condition could have changed: those naming one
of the batch's events, or tags / attributes, plus every segment that refers to one of them
(referenced segments are written first). Each segment is written in its own transaction, so
the next one reads its new members. Full rebuilds run in the same thread, so a rebuild and an
incremental pass never interleave in this process; they reconcile what the stream cannot see
(time passing: "no visit in the last 14 days", campaign changes, a lost batch).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from liebian.events.store.base import EventRow, EventStore
from liebian.kit.clock import utcnow
from liebian.kit.db import session_scope
from liebian.kit.ids import new_id
from liebian.segments import conditions as c
from liebian.segments import repository, service
from liebian.segments.models import Segment

log = logging.getLogger("liebian.segments")

TAGS_CHANGED = "contact.tags_changed"
ATTRIBUTES_CHANGED = "contact.attributes_changed"
# Change sets larger than this are not copied into the event store as segment_entered /
# segment_exited events (a first build of a big segment would flood the spool).
MAX_EMITTED = 10_000


@dataclass
class Work:
    """What changed in one workspace: contacts whose tags / attributes changed, and per event
    name the people (external ids, or visitor ids to resolve) who did it."""

    workspace_id: str
    changed: dict[str, set[str]] = field(default_factory=dict)  # "tags"/"attributes" → ids
    people: dict[str, set[str]] = field(default_factory=dict)  # event → external ids
    visitors: dict[str, set[str]] = field(default_factory=dict)  # event → visitor ids

    def merge(self, other: Work) -> None:
        for mine, theirs in (
            (self.changed, other.changed),
            (self.people, other.people),
            (self.visitors, other.visitors),
        ):
            for key, values in theirs.items():
                mine.setdefault(key, set()).update(values)

    def cause_for(self, node: c.Condition) -> str:
        watched = c.watched_events(node)
        events = sorted(watched & set(self.people) | (watched & set(self.visitors)))
        parts = [f"event:{e}" for e in events[:3]]
        parts += [k + "_changed" for k in sorted(self.changed)]
        return ",".join(parts) or "change"


@dataclass
class Target:
    """A dynamic segment or a rule tag with its parsed condition."""

    kind: str  # "segment" | "tag"
    id: str
    node: c.Condition
    segment: Segment | None = None


def _candidates(node: c.Condition, work: Work, ids: dict[str, set[str]]) -> set[str]:
    """Contacts whose change may move them in or out of ``node``: those who did one of its
    events, or whose tags / attributes changed when it names tags / attributes, or whose
    community membership changed (the group_* events) when it names a community."""
    out: set[str] = set()
    for leaf in c.walk(node):
        if isinstance(leaf, c.Event | c.EventTime):
            out |= ids.get(leaf.event, set())
        elif isinstance(leaf, c.Community):
            for name in c.COMMUNITY_EVENTS:
                out |= ids.get(name, set())
        elif isinstance(leaf, c.Tags):
            out |= work.changed.get("tags", set())
        elif isinstance(leaf, c.Attribute | c.Channel):
            out |= work.changed.get("attributes", set())
    return out


WANTED_TTL = 2.0  # seconds between re-reads of the event names conditions refer to


class MembershipKeeper:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        readers: sessionmaker[Session],
        store: EventStore | None,
        *,
        emit: Callable[[bytes], None] | None = None,
    ) -> None:
        self.sessions = sessions
        self.readers = readers
        self.store = store
        # Appends NDJSON event lines to the spool (segment_entered / segment_exited).
        self.emit = emit
        self._queue: queue.Queue[Work | str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="liebian-segments", daemon=True)
        self._lock = threading.Lock()  # one pass (incremental or full) at a time
        self._duck: Any = None
        # The flusher thread reads batches through _duck while stop() may run on another
        # thread: DuckDB refuses (rather than waits) on a busy connection, so both take this.
        self._duck_lock = threading.Lock()
        self.passes = 0
        self.last_error: BaseException | None = None
        self._idle = threading.Event()
        self._idle.set()
        # Event names some live condition names, across workspaces (see wanted_events).
        self._wanted: frozenset[str] | None = None
        self._wanted_at = 0.0
        self._wanted_version = -1

    # -- inputs ----------------------------------------------------------------------------

    def start(self) -> None:
        """Idempotent: two apps over one runtime (tests mount the API twice) share one keeper."""
        if self._thread.is_alive():
            return
        if self._thread.ident is not None:  # stopped before: a thread runs only once
            self._thread = threading.Thread(target=self._run, name="liebian-segments", daemon=True)
        self._thread.start()

    def is_running(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        self._queue.put(None)
        if self._thread.is_alive():
            self._thread.join()
        with self._duck_lock:
            if self._duck is not None:
                self._duck.close()
                self._duck = None

    def submit(self, work: Work) -> None:
        self._idle.clear()
        self._queue.put(work)

    def on_contacts_changed(self, kind: str) -> Callable[[Any], None]:
        def handler(payload: Any) -> None:
            if isinstance(payload, dict) and payload.get("workspace_id"):
                ids = set(payload.get("contact_ids") or ())
                if ids:
                    self.submit(Work(payload["workspace_id"], changed={kind: ids}))

        return handler

    def on_loaded(self, path: Path) -> None:
        """Spool after-load hook: who did what in the batch just stored (runs in the flusher
        thread; DuckDB reads the file without holding the GIL)."""
        import duckdb

        wanted = self.wanted_events()
        if not wanted:  # no live condition names an event: nothing in the batch can matter
            return
        with self._duck_lock:
            if self._duck is None:
                self._duck = duckdb.connect()
            rows = self._duck.execute(
                "SELECT DISTINCT workspace_id, event, nullif(user_id, ''), nullif(visitor_id, '')"
                " FROM read_json($p, format='newline_delimited', columns={'workspace_id': 'VARCHAR',"
                " 'event': 'VARCHAR', 'user_id': 'VARCHAR', 'visitor_id': 'VARCHAR'})"
                " WHERE list_contains($wanted, event)",
                {"p": str(path), "wanted": sorted(wanted)},
            ).fetchall()
        by_ws: dict[str, Work] = {}
        for ws, event, user, visitor in rows:
            if not ws or not event:
                continue
            work = by_ws.setdefault(ws, Work(ws))
            if user:
                work.people.setdefault(event, set()).add(user)
            elif visitor:
                work.visitors.setdefault(event, set()).add(visitor)
        for work in by_ws.values():
            self.submit(work)

    def wanted_events(self) -> frozenset[str]:
        """The event names any dynamic segment or rule tag of any workspace refers to, read at
        most every WANTED_TTL seconds. A batch of events nobody's condition names (a burst of
        redirect clicks, usually) is then skipped without reading it: turning tens of
        thousands of visitors into sets every second, in the serving process, cost the
        redirect's p99 5 → 30 ms over a 60 s saturating run (docs/benchmarks.md). A condition
        created in this process is seen at once (``service.conditions_version``); one created in
        another server process misses at most WANTED_TTL seconds of events until the next
        rebuild reconciles."""
        now, version = time.monotonic(), service.conditions_version()
        if (
            self._wanted is not None
            and self._wanted_version == version
            and now - self._wanted_at < WANTED_TTL
        ):
            return self._wanted
        with self.readers() as reader:
            targets = self._targets(reader, None)
        names: set[str] = set()
        for t in targets:
            names |= c.watched_events(t.node)
        self._wanted, self._wanted_at, self._wanted_version = frozenset(names), now, version
        return self._wanted

    def rebuild_all(self, workspace_id: str | None = None) -> int:
        """Full rebuild of every dynamic segment and rule tag (runs in the caller's thread,
        serialized with the incremental passes). Returns how many were rebuilt."""
        with self._lock:
            return self._rebuild(workspace_id)

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Tests and benchmarks: wait until the queue is drained."""
        return self._idle.wait(timeout)

    # -- the worker ------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            batch: dict[str, Work] = {}
            stop = False
            while True:
                if isinstance(item, Work):
                    if item.workspace_id in batch:
                        batch[item.workspace_id].merge(item)
                    else:
                        batch[item.workspace_id] = item
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
            for work in batch.values():
                try:
                    with self._lock:
                        self.process(work)
                    self.last_error = None
                except Exception as exc:  # keep the thread alive; the rebuild reconciles
                    self.last_error = exc
                    log.exception("segments: incremental pass failed")
            self.passes += 1
            if self._queue.empty():
                self._idle.set()
            if stop:
                return

    def _targets(self, session: Session, workspace_id: str | None) -> list[Target]:
        out: list[Target] = []
        segments = service.ordered_for_build(repository.dynamic_segments(session, workspace_id))
        for seg in segments:
            try:
                node = service.check_condition(session, seg.workspace_id, seg.condition)
            except c.ConditionInvalid as exc:
                log.warning("segment %s has an invalid condition: %s", seg.id, exc)
                continue
            out.append(Target("segment", seg.id, node, seg))
        for tag in repository.rule_tags(session, workspace_id):
            try:
                node = service.check_condition(session, tag.workspace_id, tag.condition)
            except c.ConditionInvalid as exc:
                log.warning("rule tag %s has an invalid condition: %s", tag.id, exc)
                continue
            out.append(Target("tag", tag.id, node))
        return out

    def _contacts_by_event(
        self, reader: Session, work: Work, wanted: set[str]
    ) -> dict[str, set[str]]:
        """event → contact ids of the people who did it, for the events in ``wanted`` (those
        some condition names: a burst of clicks costs nothing when no segment uses clicks)."""
        work = Work(
            work.workspace_id,
            people={e: p for e, p in work.people.items() if e in wanted},
            visitors={e: v for e, v in work.visitors.items() if e in wanted},
        )
        visitors = set().union(*work.visitors.values()) if work.visitors else set()
        aliased: dict[str, str] = {}
        if visitors and self.store is not None and len(visitors) <= 5000:
            aliased = _aliased_users(self.store, work.workspace_id, visitors)
        externals = set().union(*work.people.values()) if work.people else set()
        externals |= set(aliased.values())
        if not externals:
            return {}
        to_id = repository.contact_ids_by_external(reader, work.workspace_id, sorted(externals))
        out: dict[str, set[str]] = {}
        for event, people in work.people.items():
            out.setdefault(event, set()).update(to_id[p] for p in people if p in to_id)
        for event, vis in work.visitors.items():
            users = {aliased[v] for v in vis if v in aliased}
            out.setdefault(event, set()).update(to_id[u] for u in users if u in to_id)
        return out

    def process(self, work: Work, now: datetime | None = None) -> int:
        """One incremental pass; returns how many memberships changed."""
        at = now or utcnow()
        with self.readers() as reader:
            targets = self._targets(reader, work.workspace_id)
            if not targets:
                return 0
            wanted = set().union(*(c.watched_events(t.node) for t in targets))
            by_event = self._contacts_by_event(reader, work, wanted)
        chosen: dict[str, set[str]] = {}
        changed = 0
        cache: dict[Any, Any] = {}
        for t in targets:  # referenced segments come first
            cands = _candidates(t.node, work, by_event)
            for ref in c.referenced_segments(t.node):
                cands |= chosen.get(ref, set())
            if not cands:
                continue
            chosen[t.id] = cands
            changed += self._apply(t, sorted(cands), work.cause_for(t.node), at, cache)
        return changed

    def _apply(
        self,
        target: Target,
        contact_ids: list[str],
        cause: str,
        at: datetime,
        cache: dict[Any, Any] | None = None,
    ) -> int:
        if target.kind == "tag" or target.segment is None:
            return self._apply_tag(target, contact_ids, cause, at, cache)
        with session_scope(self.sessions) as session, self.readers() as reader:
            segment = repository.get(session, target.segment.workspace_id, target.id, lock=True)
            if segment is None or segment.kind != "dynamic":
                return 0
            ch = service.refresh(
                session,
                reader,
                self.store,
                segment,
                contact_ids,
                cause=cause,
                now=at,
                cache=cache,
            )
        self._emit(ch, target, cause)
        return len(ch.entered) + len(ch.exited)

    def _apply_tag(
        self,
        target: Target,
        contact_ids: list[str] | None,
        cause: str,
        at: datetime,
        cache: dict[Any, Any] | None = None,
    ) -> int:
        from liebian.contacts.models import Tag

        with session_scope(self.sessions) as session, self.readers() as reader:
            tag = session.get(Tag, target.id)
            if tag is None or tag.kind != "rule":
                return 0
            added, removed = service.apply_rule_tag(
                session,
                reader,
                self.store,
                tag,
                target.node,
                contact_ids,
                cause=cause,
                now=at,
                cache=cache,
            )
        return added + removed

    def _rebuild(self, workspace_id: str | None) -> int:
        at = utcnow()
        with self.readers() as reader:
            targets = self._targets(reader, workspace_id)
        done = 0
        for t in targets:
            try:
                if t.kind == "tag":
                    self._apply_tag(t, None, "rebuild", at)
                else:
                    assert t.segment is not None
                    with session_scope(self.sessions) as session, self.readers() as reader:
                        segment = repository.get(session, t.segment.workspace_id, t.id, lock=True)
                        if segment is None:
                            continue
                        ch = service.build(
                            session, reader, self.store, segment, cause="rebuild", now=at
                        )
                    self._emit(ch, t, "rebuild")
                done += 1
            except Exception:
                log.exception("segments: rebuild of %s failed", t.id)
                self._record_error(t)
        return done

    def _record_error(self, t: Target) -> None:
        if t.kind != "segment" or t.segment is None:
            return
        import sys

        exc = sys.exc_info()[1]
        with session_scope(self.sessions) as session:
            seg = repository.get(session, t.segment.workspace_id, t.id)
            if seg is not None:
                seg.build_error = f"{type(exc).__name__}: {exc}"[:500]

    def _emit(self, ch: service.Changes, target: Target, cause: str) -> None:
        """segment_entered / segment_exited as events, so funnels and journeys see them."""
        if self.emit is None or not (ch.entered or ch.exited):
            return
        if len(ch.entered) + len(ch.exited) > MAX_EMITTED:
            log.info(
                "segments: %s changed %d memberships; not copied to the event store",
                target.id,
                len(ch.entered) + len(ch.exited),
            )
            return
        assert target.segment is not None
        ws = target.segment.workspace_id
        with self.readers() as reader:
            ext = repository.external_ids(reader, sorted(ch.entered | ch.exited))
        now = utcnow()
        lines = b"".join(
            EventRow(
                workspace_id=ws,
                event_id=new_id("evt"),
                event=name,
                ts=now,
                user_id=ext[cid],
                properties={"segment_id": target.id, "cause": cause, "version": ch.version},
            ).to_json_line()
            for name, ids in (("segment_entered", ch.entered), ("segment_exited", ch.exited))
            for cid in sorted(ids)
            if cid in ext
        )
        if lines:
            self.emit(lines)


def _aliased_users(store: EventStore, workspace_id: str, visitors: Iterable[str]) -> dict[str, str]:
    """visitor id → the user id it was identified as."""
    from liebian.analytics.sql import Sql

    sql = Sql(store)
    listed = sql.in_list("visitor_id", sorted(visitors))
    rows = store.query(
        f"SELECT visitor_id, user_id FROM {store.aliases_source()}"
        f" WHERE workspace_id = {sql.p(workspace_id)} AND {listed}",
        sql.params,
    )
    return {r[0]: r[1] for r in rows if r[1]}


class KeeperComponent:
    """Starts the keeper with the server: subscribes it to the bus and to the spool."""

    def __init__(self, runtime: Any) -> None:
        self.runtime = runtime
        self.keeper: MembershipKeeper | None = None

    def build(self) -> MembershipKeeper:
        rt = self.runtime
        spool = rt.spool
        keeper = MembershipKeeper(
            rt.sessions,
            rt.read_sessions,
            rt.event_store,
            emit=spool.append_line if spool is not None else None,
        )
        rt.extras["segments_keeper"] = keeper
        return keeper

    async def start(self) -> None:
        keeper = self.runtime.extras.get("segments_keeper") or self.build()
        self.keeper = keeper
        already_live = keeper.is_running()
        keeper.start()
        if self.runtime.settings.segments_live and not already_live:
            bus = self.runtime.bus
            bus.subscribe(TAGS_CHANGED, keeper.on_contacts_changed("tags"))
            bus.subscribe(ATTRIBUTES_CHANGED, keeper.on_contacts_changed("attributes"))
            if self.runtime.spool is not None:
                self.runtime.spool.after_load.append(keeper.on_loaded)

    async def stop(self) -> None:
        import asyncio

        if self.keeper is not None:
            if (
                self.runtime.spool is not None
                and self.keeper.on_loaded in self.runtime.spool.after_load
            ):
                self.runtime.spool.after_load.remove(self.keeper.on_loaded)
            await asyncio.to_thread(self.keeper.stop)
            self.keeper = None


def rebuild_job(runtime: Any) -> Callable[[], Any]:
    """The scheduler's periodic full rebuild (reconciles what the stream missed)."""

    def run() -> int:
        keeper: MembershipKeeper | None = runtime.extras.get("segments_keeper")
        if keeper is None:
            keeper = KeeperComponent(runtime).build()
        started = time.monotonic()
        n = keeper.rebuild_all()
        log.info("segments: rebuilt %d in %.1f s", n, time.monotonic() - started)
        return n

    return run
