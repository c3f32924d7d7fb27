"""Slug → compiled entry, in process, so a redirect needs no database round trip.

Decision: a bounded LRU (default 50,000 entries), not every link. A compiled entry costs
roughly 0.9 KB with its strings and pre-serialized click fragment, so holding 1,000,000 links
would alone take most of the 300 MB budget; an LRU keeps memory flat whatever the link count,
and a miss costs one indexed primary-key-style lookup in a worker thread (the event loop keeps
serving hits meanwhile). Hot links — the ones that matter for throughput — stay resident.

Freshness: the links service publishes ``slug.changed`` after every commit that creates,
updates or deletes a link or live code; we drop that slug (and the negative entry for it) at
once. A load racing an invalidation is not cached (a generation counter compared and stored
under the cache's lock), so a stale row read before the commit never outlives it. Entries also expire after ``ttl`` seconds as a safety net
for writers that bypass the bus (another process, manual SQL).

Unknown slugs are negatively cached for a few seconds so a scanner cannot turn every 404 into a
database query; concurrent misses for one slug share a single load.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

from sqlalchemy import Engine, select

from liebian.kit.bus import LocalBus
from liebian.links.models import Link, LiveCode

KIND_LINK: Final = 0
KIND_LIVE_CODE: Final = 1

DEFAULT_CAPACITY: Final = 50_000
DEFAULT_TTL: Final = 300.0
NEGATIVE_TTL: Final = 5.0
NEGATIVE_CAPACITY: Final = 50_000

# Characters kept as they are when percent-encoding a destination for the Location header
# (reserved URL delimiters and an existing escape's '%'); everything else non-ASCII is encoded.
_URL_SAFE: Final = ":/?#[]@!$&'()*+,;=%~"
_UTM_KEYS: Final = ("source", "medium", "campaign", "term", "content")

# A destination ready to receive a click id: ``prefix + click_id + suffix``.
Dest = tuple[str, str]


class Entry:
    """Everything the rules need for one slug, compiled once per load."""

    __slots__ = (
        "allowed",
        "android",
        "dest",
        "expired_url",
        "expires_at",
        "guide",
        "id",
        "ios",
        "kind",
        "loaded_at",
        "max_clicks",
        "password_hash",
        "row_fragment",
        "total_weight",
        "variants",
        "workspace_id",
    )

    kind: int
    id: str
    workspace_id: str
    dest: Dest
    ios: Dest | None
    android: Dest | None
    # Cumulative weights: ((upper_bound, dest), ...) so a pick is one scan of ≤ 4 items.
    variants: tuple[tuple[int, Dest], ...] | None
    total_weight: int
    expires_at: float | None  # epoch seconds
    expired_url: str | None
    max_clicks: int | None
    password_hash: str | None
    allowed: frozenset[str] | None
    guide: bool
    # The click row's per-link columns, already JSON: appended verbatim to every click line.
    row_fragment: str
    loaded_at: float


def _ascii_url(url: str) -> str:
    return quote(url, safe=_URL_SAFE)


# App stores and Android app markets: they have their own campaign parameters and do not want
# UTM fields on their URLs, so an ios_url/android_url pointing at one gets none.
APP_STORE_HOSTS = frozenset(
    {
        "apps.apple.com", "itunes.apple.com", "play.google.com", "app.mi.com",
        "appgallery.huawei.com", "appgallery.cloud.huawei.com", "sj.qq.com", "a.app.qq.com",
        "app.vivo.com.cn", "h5coml.vivo.com.cn", "app.meizu.com", "store.oppomobile.com",
        "app.flyme.cn", "shouji.baidu.com", "m.app.so.com", "apps.samsung.com",
    }
)  # fmt: skip


def is_app_store(url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    return host in APP_STORE_HOSTS


def compile_app_destination(url: str, utm: Mapping[str, str | None] | None) -> Dest:
    """An iOS/Android destination: UTM fields only when it is not an app store."""
    return compile_destination(url, None if is_app_store(url) else utm)


def compile_destination(url: str, utm: Mapping[str, str | None] | None) -> Dest:
    """Merge the link's UTM fields into ``url`` and leave room for ``lb_cid``.

    The link's UTM fields replace same-named parameters already in the destination (the link
    setting is the explicit, newer intent); every other parameter keeps its place and encoding.
    """
    parts = urlsplit(_ascii_url(url))
    pairs = [p for p in parts.query.split("&") if p] if parts.query else []
    if utm:
        add = {f"utm_{k}": v for k in _UTM_KEYS if (v := utm.get(k))}
        if add:
            pairs = [p for p in pairs if p.split("=", 1)[0] not in add]
            pairs.append(urlencode(add))
    pairs = [p for p in pairs if p.split("=", 1)[0] != "lb_cid"]
    query = "&".join(pairs)
    base = urlunsplit((parts.scheme, parts.netloc, parts.path or "/", query, ""))
    prefix = base + ("&" if query else "?") + "lb_cid="
    suffix = "#" + parts.fragment if parts.fragment else ""
    return prefix, suffix


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _epoch(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:  # SQLite stores naive UTC
        value = value.replace(tzinfo=UTC)
    return float(value.timestamp())


def _loads(value: Any) -> Any:
    # Raw DBAPI rows: SQLite hands JSON columns back as text, psycopg as Python objects.
    return json.loads(value) if isinstance(value, str) else value


def compile_link(row: Mapping[str, Any]) -> Entry:
    utm: dict[str, str | None] = _loads(row["utm"]) or {}
    e = Entry()
    e.kind = KIND_LINK
    e.id = row["id"]
    # Thousands of links share a handful of workspaces: one string each, not one per link.
    e.workspace_id = sys.intern(row["workspace_id"])
    e.dest = compile_destination(row["url"], utm)
    e.ios = compile_app_destination(row["ios_url"], utm) if row["ios_url"] else None
    e.android = compile_app_destination(row["android_url"], utm) if row["android_url"] else None
    variants = _loads(row["variants"])
    if variants:
        total = 0
        compiled: list[tuple[int, Dest]] = []
        for v in variants:
            total += int(v["weight"])
            compiled.append((total, compile_destination(v["url"], utm)))
        e.variants = tuple(compiled)
        e.total_weight = total
    else:
        e.variants = None
        e.total_weight = 0
    e.expires_at = _epoch(row["expires_at"])
    e.expired_url = _ascii_url(row["expired_url"]) if row["expired_url"] else None
    e.max_clicks = row["max_clicks"]
    e.password_hash = row["password_hash"]
    allowed = _loads(row["allowed_platforms"])
    e.allowed = frozenset(allowed) if allowed else None
    e.guide = bool(row["browser_guide"])
    fragment = {
        "workspace_id": e.workspace_id,
        "event": "click",
        "link_id": e.id,
        "channel": row["channel"],
        "campaign_id": row["campaign_id"],
        **{f"utm_{k}": utm.get(k) for k in _UTM_KEYS},
    }
    e.row_fragment = ",".join(f"{_json(k)}:{_json(v)}" for k, v in fragment.items())
    e.loaded_at = time.time()
    return e


def compile_live_code(live_code_id: str, workspace_id: str) -> Entry:
    e = Entry()
    e.kind = KIND_LIVE_CODE
    e.id = live_code_id
    e.workspace_id = workspace_id
    e.dest = ("", "")
    e.ios = e.android = None
    e.variants = None
    e.total_weight = 0
    e.expires_at = None
    e.expired_url = None
    e.max_clicks = None
    e.password_hash = None
    e.allowed = None
    e.guide = False
    e.row_fragment = ""
    e.loaded_at = time.time()
    return e


_LINK_COLUMNS = (
    Link.id,
    Link.workspace_id,
    Link.url,
    Link.channel,
    Link.campaign_id,
    Link.utm,
    Link.expires_at,
    Link.expired_url,
    Link.max_clicks,
    Link.password_hash,
    Link.allowed_platforms,
    Link.ios_url,
    Link.android_url,
    Link.variants,
    Link.browser_guide,
)


class SlugLoader:
    """Reads one slug through a raw DBAPI connection.

    Raw on purpose: the SQLite engine opens every SQLAlchemy transaction with ``BEGIN
    IMMEDIATE`` (the write lock), which a read-only lookup must not take — it would queue behind
    a bulk import. A bare SELECT on pysqlite runs in autocommit mode instead.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        dialect = engine.dialect
        link_stmt = select(*_LINK_COLUMNS).where(Link.slug == "__slug__")
        live_stmt = select(LiveCode.id, LiveCode.workspace_id).where(LiveCode.slug == "__slug__")
        self._link_sql = str(link_stmt.compile(dialect=dialect))
        self._live_sql = str(live_stmt.compile(dialect=dialect))
        self._names = [c.key for c in _LINK_COLUMNS]
        self._positional = dialect.positional
        self._local = threading.local()

    def _params(self, slug: str) -> Any:
        return (slug,) if self._positional else {"slug_1": slug}

    def _connection(self) -> Any:
        # SQLite: one long-lived connection per loader thread; the engine's NullPool would
        # otherwise open a file and run four PRAGMAs for every miss. Server databases: the pool.
        if self.engine.dialect.name != "sqlite":
            return self.engine.raw_connection()
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self.engine.raw_connection()
            self._local.conn = conn
        return conn

    def load(self, slug: str) -> Entry | None:
        conn = self._connection()
        try:
            # fetchall + close: an unfinished statement would keep SQLite's read snapshot open
            # on the reused connection, and later loads would not see newer links.
            cur = conn.cursor()
            try:
                cur.execute(self._link_sql, self._params(slug))
                rows = cur.fetchall()
                if rows:
                    return compile_link(dict(zip(self._names, rows[0], strict=True)))
                cur.execute(self._live_sql, self._params(slug))
                live = cur.fetchall()
                if live:
                    return compile_live_code(live[0][0], live[0][1])
                return None
            finally:
                cur.close()
        except BaseException:
            self._local.conn = None  # a broken connection is not reused
            conn.close()
            raise
        finally:
            if self.engine.dialect.name != "sqlite":
                conn.close()


class LinkCache:
    """The slug → entry table (see the module's note on freshness).

    ``invalidate`` runs on whichever thread committed the change (a worker thread, the
    group-commit writer, the bus relay), while hits, misses and stores run on the event loop.
    Two races were possible: a hit moved an entry that an invalidation had just popped
    (KeyError on the redirect path), and a load checked the generation, was overtaken by an
    invalidation, and stored the stale row it read for the full TTL. Now every change to the
    table — store, invalidate, clear, expiry — holds one lock, and a store compares the
    generation and writes in one step, so an invalidation is either before the check (the
    stale row is dropped) or after the store (it removes the row). A hit takes no lock (see
    ``get``): a lock there measured ~1.5 µs per redirect on this machine
    (bench/bench_redirect_under_abuse.py --micro).
    """

    def __init__(
        self,
        loader: SlugLoader,
        *,
        capacity: int = DEFAULT_CAPACITY,
        ttl: float = DEFAULT_TTL,
        negative_ttl: float = NEGATIVE_TTL,
    ) -> None:
        self.loader = loader
        self.capacity = capacity
        self.ttl = ttl
        self.negative_ttl = negative_ttl
        self._entries: OrderedDict[str, Entry] = OrderedDict()
        self._negative: dict[str, float] = {}
        self._inflight: dict[str, asyncio.Future[Entry | None]] = {}
        self._generation = 0
        self._lock = threading.Lock()
        self.loads = 0

    def subscribe(self, bus: LocalBus) -> None:
        bus.subscribe("slug.changed", self.invalidate)

    def invalidate(self, slug: Any) -> None:
        # Called from whichever thread committed: the generation bump makes any load already
        # under way skip storing what it read.
        key = str(slug)
        with self._lock:
            self._generation += 1
            self._entries.pop(key, None)
            self._negative.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._generation += 1
            self._entries.clear()
            self._negative.clear()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, slug: str, now: float) -> Entry | bool | None:
        """Entry on a hit, ``None`` for a known-unknown slug, ``False`` when a load is needed.

        The hit path takes no lock: each dict operation is atomic under the GIL, and an
        invalidation that pops the entry between the lookup and ``move_to_end`` only means this
        request uses the entry it found (it began before the change committed its
        invalidation). Removing an expired entry goes through the lock."""
        entry = self._entries.get(slug)
        if entry is not None:
            if now - entry.loaded_at < self.ttl:
                try:  # noqa: SIM105 (hot path: suppress() costs a context manager)
                    self._entries.move_to_end(slug)
                except KeyError:
                    pass  # invalidated meanwhile (see above)
                return entry
            with self._lock:
                if self._entries.get(slug) is entry:
                    del self._entries[slug]
            return False
        until = self._negative.get(slug)
        if until is not None:
            if now < until:
                return None
            with self._lock:
                if self._negative.get(slug) == until:
                    del self._negative[slug]
        return False

    async def load(self, slug: str) -> Entry | None:
        pending = self._inflight.get(slug)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Entry | None] = asyncio.get_running_loop().create_future()
        self._inflight[slug] = future
        generation = self._generation
        try:
            entry = await asyncio.to_thread(self.loader.load, slug)
            self.loads += 1
            self._store(slug, entry, generation)
            future.set_result(entry)
            return entry
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: waiters re-raise, nobody logs it twice
            raise
        finally:
            self._inflight.pop(slug, None)

    def lookup_sync(self, slug: str) -> Entry | None:
        """Blocking lookup for callers outside the event loop (tests, CLI tools)."""
        hit = self.get(slug, time.time())
        if hit is None or isinstance(hit, Entry):
            return hit
        generation = self._generation
        entry = self.loader.load(slug)
        self._store(slug, entry, generation)
        return entry

    def _store(self, slug: str, entry: Entry | None, generation: int) -> None:
        """Cache what a load read, unless something changed since it began (``generation``)."""
        with self._lock:
            if generation != self._generation:
                return  # an invalidation overtook this load: what it read may be stale
            if entry is None:
                if len(self._negative) >= NEGATIVE_CAPACITY:
                    self._negative.clear()  # a flood of random slugs: start over, stay bounded
                self._negative[slug] = time.time() + self.negative_ttl
                return
            self._entries[slug] = entry
            self._entries.move_to_end(slug)
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)
