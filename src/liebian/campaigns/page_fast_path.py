"""The participant pages a friend opens from a shared link, as a raw ASGI app.

``GET /p/{campaign}/{code}`` (an invite landing) and ``GET /p/{campaign}?ch=…`` (a campaign
entry) are what a campaign's audience opens by the thousand, almost always as an anonymous
visitor: no sign-in cookie, no ``t`` token. Through FastAPI each cost route matching, the
dependency stack, a worker thread, a read session and a Jinja render — about 300–500
answers a second on the bench machine, against 8,000 redirects (docs/benchmarks.md). The
dispatcher sends these GETs here instead (decision 0027).

What this path serves itself: an anonymous GET of either page for a campaign and code that
exist. Everything else — a ``t`` token, the ``lb_pt`` or ``lb_ps`` sign-in cookies (the
owner's own view, a signed-in visitor), an unknown campaign or code (the Chinese error page), ``/p/{c}/me``, HEAD,
odd paths — is handed to the FastAPI routes (campaigns/pages.py) untouched. Both render with
the same functions (``pages.entry_html`` / ``pages.invite_html``), so a friend sees the same
bytes either way; the rate limits, the ``lb_vid`` device cookie and the ``page_view`` /
``invite_click`` spool lines are the routes' too.

Caches (in process, bounded LRUs):

* the campaign (a detached row and its page context), dropped at once when a row of it is
  committed in this process (``campaign.changed`` on the bus, relayed to the other server
  processes in scale mode) and re-read at least every :data:`HARD_TTL` seconds regardless;
* per invite code, the participant, its owner's public nickname, the invite progress and the
  rendered page, re-read in the background once older than :data:`SOFT_TTL` and never served
  older than :data:`HARD_TTL`: what a friend sees is at most 2 s behind the database;
* per campaign and channel, the rendered entry page.

Nothing here touches the database on the event loop: a load runs in a worker thread (one at a
time per key), and the request waits for it only when nothing fresh enough is cached.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable, MutableMapping
from dataclasses import dataclass, field
from typing import Any, Final, Generic, TypeVar

from sqlalchemy import event
from sqlalchemy.orm import Session, object_session
from starlette.datastructures import QueryParams
from starlette.requests import cookie_parser
from starlette.responses import Response

from liebian.app.deps import LIMIT_CHECKED, ParticipantPageLimited
from liebian.app.runtime import Runtime
from liebian.campaigns import fission_events, pages, referrals, repository, service
from liebian.campaigns.models import Campaign, Participant
from liebian.contacts import service as contacts
from liebian.contacts.models import Contact
from liebian.events.spool import ClickBurst
from liebian.kit.bus import BUS_KEY, LocalBus
from liebian.kit.client_ip import client_ip
from liebian.kit.db import after_commit, session_scope
from liebian.kit.faults import guard
from liebian.kit.ids import new_id
from liebian.kit.ratelimit import Limiter, limiter_for
from liebian.links.platforms import classify_cached
from liebian.participants import service as sign_in
from liebian.participants.session import SESSION_COOKIE
from liebian.redirect import pages as redirect_pages
from liebian.redirect.clicks import VISITOR_COOKIE, valid_id
from liebian.redirect.clicks import new_id as new_visitor_id

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

log = logging.getLogger("liebian.campaigns.pages")

CAMPAIGN_CHANGED: Final = "campaign.changed"
PREFIX: Final = "/p/"
# The group-buy and assist pages (/g/{group}, /a/{assist}); the dispatcher sends GETs of
# all three here.
ACTIVITY_PREFIXES: Final = {"/g/": "group", "/a/": "assist"}
PREFIXES: Final = (PREFIX, *ACTIVITY_PREFIXES)
ACTIVITY_CAPACITY: Final = 4_096
ACTIVITY_CAMPAIGNS: Final = 65_536  # activity id → its campaign id (never changes)
SOFT_TTL: Final = 1.0  # older than this: re-read in the background, serve what is cached
HARD_TTL: Final = 2.0  # never served older than this: the request waits for a fresh read
CAMPAIGN_CAPACITY: Final = 1_024
INVITE_CAPACITY: Final = 4_096  # ~4 KB of page each: ~16 MB at most
CHANNELS_PER_CAMPAIGN: Final = 32
BATCH_KEYS: Final = 512  # keys one batched read takes at most
_UNANSWERED: Final = object()  # a key the batch left out of its answer
# Columns the pages never show: consumed stock and budget move with every reward granted,
# and must not make every cached page of the campaign look changed.
_UNSHOWN: Final = frozenset({"stock_used", "budget_used"})
_SEGMENT = re.compile(r"[A-Za-z0-9_-]{1,64}")


def page_target(path: str) -> tuple[str, str | None] | None:
    """``(campaign_id, None)`` for an entry page, ``(campaign_id, code)`` for an invite
    landing; None for every other path (the routes' to answer)."""
    if not path.startswith(PREFIX):
        return None
    campaign_id, slash, code = path[len(PREFIX) :].partition("/")
    if _SEGMENT.fullmatch(campaign_id) is None:
        return None
    if not slash:
        return campaign_id, None
    if code in ("me", "signin") or _SEGMENT.fullmatch(code) is None:
        return None
    return campaign_id, code


def activity_target(path: str) -> tuple[str, str] | None:
    """``("group", id)`` for ``/g/{id}``, ``("assist", id)`` for ``/a/{id}``; else None."""
    kind = ACTIVITY_PREFIXES.get(path[:3])
    if kind is None or _SEGMENT.fullmatch(path[3:]) is None:
        return None
    return kind, path[3:]


# ── the caches ──────────────────────────────────────────────────────────────────────────

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class _Slot(Generic[V]):
    __slots__ = ("loaded_at", "value")

    def __init__(self, value: V, loaded_at: float) -> None:
        self.value = value
        self.loaded_at = loaded_at


class RefreshingCache(Generic[K, V]):
    """A bounded LRU of values read in a worker thread: served while younger than ``hard``,
    re-read in the background once older than ``soft``, one read at a time per key.

    With ``refresh`` (many keys → their values), every read goes through one batch: one
    worker-thread job at a time reads every key that went stale, or was asked for and is not
    cached (or is past ``hard``), while the previous job ran — a hot campaign's 200 invite
    codes are one read a second, not 200; and when the pages come back after a quiet spell
    longer than ``hard``, the requests for 200 codes wait for one or two batches, not in line
    behind 200 reads of one code each (each a thread hop and a session: that queue was the
    100–400 ms p99 of the pages at 2,000 req/s, docs/benchmarks.md, decision 0042). A batch
    that a request waits for also re-reads the most recently used entries past ``soft``
    (:meth:`_due`): they are probably asked for next, and one key more in the batch's query
    each. A key the batch does not answer (``refresh`` leaves it out of its result, or the
    batch fails) is read on its own with the request's ``load``.

    A read that an :meth:`invalidate` or :meth:`clear` overtook is handed to whoever
    waited for it but not kept (a generation counter checked under the lock), so a row read
    before a commit never outlives the commit's invalidation. Loaders return None for "no
    such thing": nothing is cached then (the caller falls back to the full path)."""

    def __init__(
        self,
        capacity: int,
        *,
        soft: float = SOFT_TTL,
        hard: float = HARD_TTL,
        refresh: Callable[[list[K]], dict[K, V | None]] | None = None,
    ) -> None:
        self.capacity = capacity
        self.soft = soft
        self.hard = hard
        self.refresh = refresh
        self.loads = 0  # reads of one key (misses and unbatched refreshes)
        self.batches = 0  # batched reads (refreshes and misses)
        self._entries: OrderedDict[K, _Slot[V]] = OrderedDict()
        self._loading: dict[K, asyncio.Task[V | None]] = {}
        self._stale: set[K] = set()  # keys the next batch reads (insertion order kept below)
        self._waiting: dict[K, asyncio.Future[Any]] = {}  # requests waiting for a batch
        self._batch: asyncio.Task[None] | None = None
        self._lock = threading.Lock()
        self._generation = 0

    def __len__(self) -> int:
        return len(self._entries)

    def peek(self, key: K) -> V | None:
        slot = self._entries.get(key)
        return None if slot is None else slot.value

    async def get(
        self, key: K, load: Callable[[], V | None], usable: Callable[[V], bool] | None = None
    ) -> V | None:
        slot = self._entries.get(key)
        if slot is not None and (usable is None or usable(slot.value)):
            age = time.monotonic() - slot.loaded_at
            if age < self.hard:
                if age >= self.soft:
                    self._refresh_later(key, load)  # this request is served now
                # KeyError: invalidated meanwhile (another thread); still ours to serve.
                with contextlib.suppress(KeyError):
                    self._entries.move_to_end(key)
                return slot.value
        if self.refresh is not None:
            # Shielded: a client that goes away must not cancel a read others wait for.
            found = await asyncio.shield(self._in_batch(key))
            if found is not _UNANSWERED:
                return found
        return await asyncio.shield(self._start(key, load))

    def invalidate(self, key: K) -> None:
        """From any thread (the one that committed)."""
        with self._lock:
            self._generation += 1
            self._entries.pop(key, None)

    def clear(self, _payload: Any = None) -> None:
        with self._lock:
            self._generation += 1
            self._entries.clear()

    def _refresh_later(self, key: K, load: Callable[[], V | None]) -> None:
        if self.refresh is None:
            self._start(key, load)
            return
        self._stale.add(key)
        self._run_batches()

    def _in_batch(self, key: K) -> asyncio.Future[Any]:
        """The answer for ``key`` from the batch that reads it next (or is reading it now):
        a value, None (no such thing) or ``_UNANSWERED``."""
        waiting = self._waiting.get(key)
        if waiting is None or waiting.get_loop() is not asyncio.get_running_loop():
            waiting = self._waiter(key)
            self._stale.add(key)
        self._run_batches()
        return waiting

    def _waiter(self, key: K) -> asyncio.Future[Any]:
        """Who waits for ``key``'s next read (a future of the running loop)."""
        loop = asyncio.get_running_loop()
        waiting = self._waiting.get(key)
        if waiting is None or waiting.get_loop() is not loop:  # (a test's new loop)
            waiting = self._waiting[key] = loop.create_future()
        return waiting

    def _run_batches(self) -> None:
        loop = asyncio.get_running_loop()
        if self._batch is None or self._batch.get_loop() is not loop:  # (a test's new loop)
            self._batch = loop.create_task(self._refresh_batches())

    async def _refresh_batches(self) -> None:
        assert self.refresh is not None
        try:
            while self._stale:
                keys = list(self._stale)[:BATCH_KEYS]
                self._stale.difference_update(keys)
                if any(k in self._waiting for k in keys):
                    keys += self._due(set(keys), BATCH_KEYS - len(keys))
                # Requests for these keys from now on join this batch (its read started
                # before them, well inside the ``hard`` bound); other keys wait for the next.
                waiters = [(k, self._waiter(k)) for k in keys]
                generation = self._generation
                started = time.monotonic()
                found: dict[K, V | None] = {}
                try:
                    found = await asyncio.to_thread(self.refresh, keys)
                    self.batches += 1
                    self._store(generation, started, found)
                except Exception:
                    # Kept as they are; whoever waits reads their key on its own.
                    log.warning("participant page cache: refresh failed", exc_info=True)
                finally:  # (cancelled too: nobody may wait for a batch that never ends)
                    for key, waiting in waiters:
                        if self._waiting.get(key) is waiting:
                            del self._waiting[key]
                        if not waiting.done():
                            waiting.set_result(found.get(key, _UNANSWERED))
        finally:
            if self._batch is asyncio.current_task():
                self._batch = None

    def _due(self, taken: set[K], room: int) -> list[K]:
        """Up to ``room`` of the most recently used entries past ``soft``: a request had to
        wait for a read, so the pages used with it are probably wanted again too (a
        campaign's codes when its traffic comes back after a quiet spell). Read in the same
        batch they cost one more key in its query each, instead of a batch of their own
        while requests queue behind it."""
        due: list[K] = []
        oldest = time.monotonic() - self.soft
        with self._lock:
            for seen, key in enumerate(reversed(self._entries)):
                if len(due) >= room or seen >= BATCH_KEYS:
                    break
                if key not in taken and self._entries[key].loaded_at <= oldest:
                    due.append(key)
        self._stale.difference_update(due)
        return due

    def _store(self, generation: int, started: float, found: dict[K, V | None]) -> None:
        with self._lock:
            if generation != self._generation:
                return
            for key, value in found.items():
                slot = self._entries.get(key)
                if slot is not None and slot.loaded_at > started:
                    continue  # read again meanwhile: that one is newer
                if value is None:
                    self._entries.pop(key, None)
                    continue
                self._entries[key] = _Slot(value, started)
                self._entries.move_to_end(key)
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)

    def _start(self, key: K, load: Callable[[], V | None]) -> asyncio.Task[V | None]:
        task = self._loading.get(key)
        loop = asyncio.get_running_loop()
        if task is None or task.get_loop() is not loop:
            task = loop.create_task(self._load(key, load))
            self._loading[key] = task
            task.add_done_callback(lambda done: self._loaded(key, done))
        return task

    def _loaded(self, key: K, task: asyncio.Task[V | None]) -> None:
        if self._loading.get(key) is task:
            del self._loading[key]
        if not task.cancelled() and task.exception() is not None:
            log.warning("participant page cache: load of %r failed", key, exc_info=task.exception())

    async def _load(self, key: K, load: Callable[[], V | None]) -> V | None:
        generation = self._generation
        started = time.monotonic()  # the data is at least this fresh
        value = await asyncio.to_thread(load)
        self.loads += 1
        self._store(generation, started, {key: value})
        return value


@dataclass(eq=False, slots=True)
class CampaignView:
    """A campaign as its pages show it: a detached row, its page context, and the rendered
    entry page per channel."""

    id: str
    workspace_id: str
    context: dict[str, Any]
    values: tuple[Any, ...]
    # channel → (the entry page, its page_view line's template)
    entry_pages: dict[str | None, tuple[bytes, dict[str, Any]]] = field(default_factory=dict)


@dataclass(eq=False, slots=True)
class InviteView:
    """One invite code's landing as an anonymous friend sees it, and what its events say."""

    campaign: CampaignView
    rows: tuple[Any, ...]  # what it was made of (repository.invite_rows)
    shown: tuple[Any, ...]  # everything the page shows of the participant
    html: bytes
    view_line: dict[str, Any]  # page_view and invite_click line templates
    click_line: dict[str, Any]


@dataclass(eq=False, slots=True)
class ActivityView:
    """A group's or an assist's page as an anonymous friend sees it, and its page_view line."""

    campaign: CampaignView
    rows: tuple[Any, ...]  # what it was made of (repository.activity_rows)
    html: bytes
    view_line: dict[str, Any]


def _values(campaign: Campaign) -> tuple[Any, ...]:
    return tuple(
        getattr(campaign, column.key)
        for column in Campaign.__mapper__.column_attrs
        if column.key not in _UNSHOWN
    )


class PageCache:
    """The caches of one process (one per runtime), kept fresh through the bus."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.campaigns: RefreshingCache[str, CampaignView] = RefreshingCache(CAMPAIGN_CAPACITY)
        self.invites: RefreshingCache[tuple[str, str], InviteView] = RefreshingCache(
            INVITE_CAPACITY, refresh=self._refresh_invites
        )
        # (kind, id) → the page of a group or an assist; and the campaign each belongs to.
        self.activities: RefreshingCache[tuple[str, str], ActivityView] = RefreshingCache(
            ACTIVITY_CAPACITY, refresh=self._refresh_activities
        )
        self.campaign_of: OrderedDict[tuple[str, str], str] = OrderedDict()

    def subscribe(self, bus: LocalBus) -> None:
        from liebian.kit.bus_relay import RESYNC_TOPIC

        bus.subscribe(CAMPAIGN_CHANGED, self._campaign_changed)
        bus.subscribe(RESYNC_TOPIC, self.clear)

    def _campaign_changed(self, campaign_id: Any) -> None:
        # The invite pages rendered from the old row are recognised by their view (a new
        # one is read on the next request), so they need no sweep.
        self.campaigns.invalidate(str(campaign_id))

    def clear(self, _payload: Any = None) -> None:
        self.campaigns.clear()
        self.invites.clear()
        self.activities.clear()

    async def campaign(self, campaign_id: str) -> CampaignView | None:
        return await self.campaigns.get(campaign_id, lambda: self._read_campaign(campaign_id))

    async def invite(self, view: CampaignView, code: str) -> InviteView | None:
        key = (view.id, code)
        return await self.invites.get(
            key, lambda: self._read_invite(view, code), lambda cached: cached.campaign is view
        )

    async def activity(self, kind: str, activity_id: str) -> ActivityView | None:
        """A group's or an assist's page; None when there is no such thing (the route's 404)."""
        key = (kind, activity_id)
        campaign_id = self.campaign_of.get(key)
        if campaign_id is None:
            campaign_id = await asyncio.to_thread(self._read_campaign_id, kind, activity_id)
            if campaign_id is None:
                return None
            self.campaign_of[key] = campaign_id
            while len(self.campaign_of) > ACTIVITY_CAMPAIGNS:
                self.campaign_of.popitem(last=False)
        view = await self.campaign(campaign_id)
        if view is None:
            return None
        return await self.activities.get(
            key, lambda: self._read_activities(view, kind, [activity_id])[activity_id],
            lambda cached: cached.campaign is view,
        )  # fmt: skip

    # In worker threads:

    def _read_campaign_id(self, kind: str, activity_id: str) -> str | None:
        with session_scope(self.runtime.read_sessions) as session:
            return repository.activity_campaign(session, kind, activity_id)

    def _refresh_activities(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], Any]:
        """The group and assist pages asked for or gone stale: one query says which are still
        right (the usual case); only the others, and those never read or read with an older
        campaign row, are read and rendered again. Those whose campaign is not cached are
        left out (read on their own)."""
        found: dict[tuple[str, str], Any] = {}
        for kind in ("group", "assist"):
            wanted = [i for k, i in keys if k == kind]
            if not wanted:
                continue
            with session_scope(self.runtime.read_sessions) as session:
                rows = repository.activity_rows(session, kind, wanted)
            changed: dict[str, list[str]] = {}
            for activity_id in wanted:
                key = (kind, activity_id)
                cached = self.activities.peek(key)
                of = self.campaign_of.get(key)
                view = self.campaigns.peek(of) if of is not None else None
                if activity_id not in rows:
                    found[key] = None  # gone
                elif view is None:
                    continue  # its campaign is not cached: read on its own
                elif cached is None or view is not cached.campaign:
                    changed.setdefault(view.id, []).append(activity_id)  # new, or a new row
                elif cached.rows == rows[activity_id]:
                    found[key] = cached  # still right, as of this read
                else:
                    changed.setdefault(view.id, []).append(activity_id)
            for campaign_id, ids in changed.items():
                view = self.campaigns.peek(campaign_id)
                if view is None:
                    continue
                for activity_id, page in self._read_activities(view, kind, ids).items():
                    found[(kind, activity_id)] = page
        return found

    def _read_activities(
        self, view: CampaignView, kind: str, ids: list[str]
    ) -> dict[str, ActivityView | None]:
        """Each page as ``pages.group_page`` / ``pages.assist_page`` render it for a visitor
        without sign-in (None: no such activity in this campaign)."""
        from liebian.campaigns.models import Assist, Group

        campaign: Campaign = view.context["campaign"]  # detached: only its loaded columns
        model: Any = Group if kind == "group" else Assist
        render = pages.group_html if kind == "group" else pages.assist_html
        out: dict[str, ActivityView | None] = {}
        with session_scope(self.runtime.read_sessions) as session:
            rows = repository.activity_rows(session, kind, ids)
            for activity_id in ids:
                row = session.get(model, activity_id)
                if row is None or row.campaign_id != view.id or activity_id not in rows:
                    out[activity_id] = None
                    continue
                html = render(session, self.runtime, row, campaign, pages.ANONYMOUS).encode()
                line = fission_events.line_template(
                    workspace_id=view.workspace_id, event="page_view", campaign_id=view.id,
                    user_id=None, properties={"page": kind, f"{kind}_id": activity_id},
                )  # fmt: skip
                out[activity_id] = ActivityView(view, rows[activity_id], html, line)
        return out

    def _read_campaign(self, campaign_id: str) -> CampaignView | None:
        with session_scope(self.runtime.read_sessions) as session:
            campaign = session.get(Campaign, campaign_id)
            if campaign is None:
                return None
            # The sign-in the pages offer (participants/) is part of what they show.
            offer = sign_in.offer(session, campaign.workspace_id, campaign.id)
            values = (*_values(campaign), offer)
            old = self.campaigns.peek(campaign_id)
            if old is not None and old.values == values:
                return old  # unchanged: its rendered pages stay good
            context = pages.campaign_context(session, self.runtime, campaign)
            return CampaignView(campaign.id, campaign.workspace_id, context, values)

    def _read_invite(self, view: CampaignView, code: str) -> InviteView | None:
        return self._read_invites(view, [code])[code]

    def _refresh_invites(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], Any]:
        """The invite pages asked for or gone stale, per campaign, with the campaign as it is
        cached now; those of a campaign no longer cached are left out (read on their own)."""
        codes: dict[str, list[str]] = {}
        for campaign_id, code in keys:
            codes.setdefault(campaign_id, []).append(code)
        found: dict[tuple[str, str], Any] = {}
        for campaign_id, wanted in codes.items():
            view = self.campaigns.peek(campaign_id)
            if view is None:
                continue
            cached = {c: self.invites.peek((campaign_id, c)) for c in wanted}
            current = [c for c, invite in cached.items() if _rendered_with(invite, view)]
            # One plain query says which pages are still right (the usual case: all of them);
            # only the others, and those never read or read with an older campaign row, are
            # read and rendered again.
            if current:
                with session_scope(self.runtime.read_sessions) as session:
                    rows = repository.invite_rows(session, campaign_id, current)
            changed = [c for c in wanted if not _rendered_with(cached[c], view)]
            for code in current:
                invite = cached[code]
                if code not in rows:
                    found[(campaign_id, code)] = None  # gone
                elif invite is not None and invite.rows == rows[code]:
                    found[(campaign_id, code)] = invite  # still right, as of this read
                else:
                    changed.append(code)
            for code, invite in self._read_invites(view, changed).items():
                found[(campaign_id, code)] = invite
        return found

    def _read_invites(self, view: CampaignView, codes: list[str]) -> dict[str, InviteView | None]:
        if not codes:
            return {}
        return self._read_invites_now(view, codes)

    def _read_invites_now(
        self, view: CampaignView, codes: list[str]
    ) -> dict[str, InviteView | None]:
        """Each code's landing as ``pages.invite_page`` shows it to a visitor without sign-in
        (None: no such code), in one read session; pages whose content did not change are
        not rendered again."""
        campaign: Campaign = view.context["campaign"]  # detached: only its loaded columns
        out: dict[str, InviteView | None] = {}
        with session_scope(self.runtime.read_sessions) as session:
            participants = repository.participants_by_codes(session, view.id, codes)
            owners = repository.by_ids(
                session, Contact, {p.contact_id for p in participants.values()}
            )
            counts = repository.counted_referral_counts(
                session, [p.id for p in participants.values()]
            )
            terms: dict[int, Any] = {}
            for code in codes:
                participant = participants.get(code)
                if participant is None:
                    out[code] = None
                    continue
                owner = owners.get(participant.contact_id)
                inviter = contacts.public_nickname(self.runtime.cipher, owner)
                version = participant.config_version
                if version not in terms:
                    terms[version] = service.terms(session, campaign, version)
                counted = counts.get(participant.id, 0)
                progress = referrals.progress_of(terms[version], counted)
                rows = (
                    participant.id, participant.channel, version, participant.contact_id,
                    owner.external_id if owner is not None else None,
                    owner.nickname_enc if owner is not None else None, counted,
                )  # fmt: skip
                out[code] = self._invite_view(view, participant, owner, inviter, progress, rows)
        return out

    def _invite_view(
        self, view: CampaignView, participant: Participant, owner: Contact | None, inviter: str,
        progress: dict[str, object], rows: tuple[Any, ...],
    ) -> InviteView:  # fmt: skip
        referrer = owner.external_id if owner is not None else None
        shown = (participant.id, participant.channel, inviter, referrer, progress["counted"],
                 progress["next"])  # fmt: skip
        old = self.invites.peek((view.id, participant.invite_code))
        if old is not None and old.campaign is view and old.shown == shown:
            html, view_line, click_line = old.html, old.view_line, old.click_line
            return InviteView(view, rows, shown, html, view_line, click_line)
        html = pages.invite_html(
            view.context, participant, inviter, progress, pages.ANONYMOUS, None, is_owner=False
        ).encode()
        # The lines the route writes for a visitor without sign-in (user_id None).
        common: dict[str, Any] = {
            "workspace_id": view.workspace_id, "campaign_id": view.id, "user_id": None,
            "channel": participant.channel, "participant_id": participant.id,
        }  # fmt: skip
        return InviteView(
            view, rows, shown, html,
            fission_events.line_template(event="page_view", properties={"page": "invite"}, **common),
            fission_events.line_template(event="invite_click", referrer=referrer, **common),
        )  # fmt: skip


def _rendered_with(invite: InviteView | None, view: CampaignView) -> bool:
    return invite is not None and invite.campaign is view


def _announce_campaign_change(_mapper: Any, _connection: Any, target: Campaign) -> None:
    """Every flushed change of a campaign row is announced after its commit (never if it
    rolls back) to the bus of the session's runtime, whatever code made it."""
    session: Session | None = object_session(target)
    bus: LocalBus | None = session.info.get(BUS_KEY) if session is not None else None
    if session is None or bus is None:
        return
    campaign_id = target.id
    after_commit(session, lambda: bus.publish(CAMPAIGN_CHANGED, campaign_id))


def watch_campaign_rows() -> None:
    """Hook :func:`_announce_campaign_change` into the ORM (once per interpreter). Bulk
    ``UPDATE campaigns`` statements bypass it; the only ones (stock and budget counters)
    change nothing a page shows, and the TTL bounds anything else."""
    for name in ("after_update", "after_delete"):
        if not event.contains(Campaign, name, _announce_campaign_change):
            event.listen(Campaign, name, _announce_campaign_change)


# ── the app ─────────────────────────────────────────────────────────────────────────────

_SETUP_LOCK = threading.Lock()


def page_cache(runtime: Runtime) -> PageCache:
    """The runtime's one cache, subscribed to its bus on first use."""
    with _SETUP_LOCK:
        cache: PageCache | None = runtime.extras.get("participant_page_cache")
        if cache is None:
            watch_campaign_rows()
            cache = PageCache(runtime)
            cache.subscribe(runtime.bus)
            runtime.extras["participant_page_cache"] = cache
        return cache


def _response_headers() -> tuple[list[tuple[bytes, bytes]], int]:
    """The full path's headers for a page (pages._page), and where its content-length is."""
    headers = list(pages._page("").raw_headers)
    at = next(i for i, (name, _) in enumerate(headers) if name == b"content-length")
    return headers, at


def _cookie_parts(secure: bool) -> tuple[bytes, bytes]:
    """The full path's Set-Cookie for a first visit, split around the visitor id."""
    marker = "VIDMARKER0"
    response = Response()
    pages.set_visitor_cookie(response, marker, secure=secure)
    value = next(v for k, v in response.raw_headers if k == b"set-cookie")
    before, _, after = value.partition(marker.encode())
    return before, after


class ParticipantPagesApp:
    def __init__(self, runtime: Runtime, fallback: ASGIApp) -> None:
        self.runtime = runtime
        self.fallback = fallback
        self.cache = page_cache(runtime)
        self.trusted = runtime.settings.trusted_proxies
        self._headers, self._length_at = _response_headers()
        self._cookie = {False: _cookie_parts(False), True: _cookie_parts(True)}
        self.served = 0  # answered here
        # A burst of page views, like one of redirects, holds event loads back (decision 0012).
        burst = runtime.extras.get("defer_loads")
        if isinstance(burst, ClickBurst):
            burst.also(lambda: self.served)

    def _limiter(self) -> Limiter:
        # The same limiter as the routes' dependency (app/deps.participant_rate_limit).
        extras = self.runtime.extras
        limiter: Limiter = extras.get("limiter") or extras.setdefault(
            "limiter", limiter_for(self.runtime.settings)
        )
        return limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await guard(self._serve, scope, receive, send, html_page=redirect_pages.error_page)

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        target = activity = None
        if scope["method"] == "GET":
            target = page_target(path)
            activity = activity_target(path) if target is None else None
        if target is None and activity is None:
            await self.fallback(scope, receive, send)
            return
        cookie_header = user_agent = None
        for name, value in scope["headers"]:  # the first of each, as Starlette reads them
            if name == b"cookie" and cookie_header is None:
                cookie_header = value.decode("latin-1")
            elif name == b"user-agent" and user_agent is None:
                user_agent = value.decode("latin-1")
        cookies = cookie_parser(cookie_header) if cookie_header else {}
        query: bytes = scope["query_string"]
        params = QueryParams(query) if query else None
        if (
            pages.IDENTITY_COOKIE in cookies
            or SESSION_COOKIE in cookies
            or (params is not None and "t" in params)
        ):
            await self.fallback(scope, receive, send)  # someone signed in, or signing in
            return
        # The limits first, as the routes' dependency does (and only once: a request handed
        # on below is marked as counted).
        cookie = cookies.get(VISITOR_COOKIE)
        wait = await self._limiter().visit(client_ip(scope, self.trusted), cookie, time.time())
        if wait:
            limited = ParticipantPageLimited("访问太频繁，请稍后再试", retry_after=int(wait) + 1)
            await limited.page()(scope, receive, send)
            return
        scope[LIMIT_CHECKED] = True
        view: CampaignView | None = None
        invite: InviteView | None = None
        page: ActivityView | None = None
        if activity is not None:
            page = await self.cache.activity(*activity)
            if page is None:
                await self.fallback(scope, receive, send)  # the route's Chinese 404 page
                return
        else:
            assert target is not None
            campaign_id, code = target
            view = await self.cache.campaign(campaign_id)
            invite = await self.cache.invite(view, code) if view is not None and code else None
            if view is None or (code is not None and invite is None):
                await self.fallback(scope, receive, send)  # the routes' Chinese error page
                return
        new_visitor = not valid_id(cookie or "")
        visitor_id = new_visitor_id() if new_visitor else cookie
        platform = classify_cached((user_agent or "")[:1000]).platform
        at = fission_events.now_text()
        if page is not None:
            body = page.html
            lines = fission_events.stamp(
                page.view_line, event_id=new_id("evt"), at=at, visitor_id=visitor_id,
                platform=platform,
            )  # fmt: skip
        elif invite is None:
            assert view is not None
            channel = ((params.get("ch") if params is not None else None) or "")[:64] or None
            body, view_line = self._entry_page(view, channel)
            lines = fission_events.stamp(
                view_line, event_id=new_id("evt"), at=at, visitor_id=visitor_id,
                platform=platform,
            )  # fmt: skip
        else:
            body = invite.html
            lines = fission_events.stamp(
                invite.view_line, event_id=new_id("evt"), at=at, visitor_id=visitor_id,
                platform=platform,
            ) + fission_events.stamp(
                invite.click_line, event_id=new_id("evt"), at=at, visitor_id=visitor_id,
                platform=platform,
            )  # fmt: skip
        spool = self.runtime.spool
        if spool is not None:
            spool.append_line(lines)
        headers = self._headers.copy()
        headers[self._length_at] = (b"content-length", str(len(body)).encode())
        if new_visitor:
            before, after = self._cookie[scope.get("scheme") == "https"]
            headers.append((b"set-cookie", before + visitor_id.encode() + after))  # type: ignore[union-attr]
        self.served += 1
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    @staticmethod
    def _entry_page(view: CampaignView, channel: str | None) -> tuple[bytes, dict[str, Any]]:
        page = view.entry_pages.get(channel)
        if page is None:
            # No database: the view holds all the page shows.
            page = (
                pages.entry_html(view.context, pages.ANONYMOUS, None, channel).encode(),
                fission_events.line_template(
                    workspace_id=view.workspace_id, event="page_view", campaign_id=view.id,
                    user_id=None, properties={"page": "entry"}, channel=channel,
                ),
            )  # fmt: skip
            if len(view.entry_pages) < CHANNELS_PER_CAMPAIGN:
                view.entry_pages[channel] = page
        return page
