"""The redirect path: a raw ASGI app for ``GET``/``HEAD``/``POST /{slug}``.

No framework on purpose (a FastAPI route answers 4–5× fewer redirects per second here, see
docs/benchmarks.md). A request on a cache hit does, in order: one dict lookup, one pass over
the headers, the rules in ``rules.py``, one ``os.write`` to the spool, two ASGI sends. The
database is touched only on a cache miss (in a worker thread) and the event store only to seed
a ``max_clicks`` counter once per link.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Final
from urllib.parse import parse_qs

from liebian.app.runtime import Runtime
from liebian.events.spool import ClickBurst, SpoolWriteError
from liebian.events.store.duckdb_budget import DuckDBBudget
from liebian.kit import client_ip
from liebian.kit.faults import REQUEST_ID_HEADER, guard, request_id
from liebian.kit.passwords import verify_password
from liebian.kit.ratelimit import Limiter, limiter_for, retry_after_header
from liebian.kit.visitor import Visitor, visitor_cookie
from liebian.links.qr import has_qr_flag
from liebian.links.schemas import SLUG_RE
from liebian.redirect import pages
from liebian.redirect.cache import KIND_LIVE_CODE, Entry, LinkCache
from liebian.redirect.clicks import (
    PERSON_PARAM_EQ,
    VISITOR_COOKIE,
    ClickRecorder,
    new_id,
    person_from_query,
    scan_recorder,
    valid_id,
)
from liebian.redirect.counters import ClickCounter
from liebian.redirect.rules import (
    UNLOCK_SECONDS,
    Outcome,
    check_unlock,
    choose,
    gate,
    unlock_cookie_name,
    unlock_token,
)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
LiveCodeServer = Callable[[Runtime, str, Visitor, Scope, Receive, Send], Awaitable[None]]

log = logging.getLogger("liebian.redirect")

MAX_FORM_BYTES: Final = 4096
RETRY_AFTER_SPOOL: Final = b"5"
_HTML: Final = (b"content-type", b"text/html; charset=utf-8")
_NO_STORE: Final = (b"cache-control", b"no-store, max-age=0")
_NOINDEX: Final = (b"x-robots-tag", b"noindex")
_EMPTY: Final = (b"content-length", b"0")
# Participant pages: no script, nothing from elsewhere, not framed, not sniffed.
_PAGE_SECURITY: Final = (
    (b"content-security-policy", pages.CSP),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
)
_VID_MARK: Final = VISITOR_COOKIE + "="


def _cookie(cookie_header: str, name: str) -> str | None:
    marker = name + "="
    if marker not in cookie_header:
        return None
    for part in cookie_header.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return None


class RedirectApp:
    def __init__(
        self,
        runtime: Runtime,
        cache: LinkCache,
        recorder: ClickRecorder,
        counter: ClickCounter,
    ) -> None:
        self.runtime = runtime
        self.cache = cache
        self.recorder = recorder
        self.counter = counter
        self.secret = runtime.secret
        # None unless LIEBIAN_TRUSTED_PROXIES is set: then X-Forwarded-For names the client.
        self.proxies = client_ip.resolver(runtime.settings.trusted_proxies)
        self._live_code_server: LiveCodeServer | None = None
        self.limiter: Limiter = runtime.extras.get("limiter") or limiter_for(runtime.settings)

    # -- responses -----------------------------------------------------------------------

    @staticmethod
    async def _page(
        send: Send,
        status: int,
        body: bytes,
        head: bool,
        extra: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        headers = [_HTML, _NO_STORE, _NOINDEX, (b"content-length", str(len(body)).encode())]
        headers.extend(_PAGE_SECURITY)
        if extra:
            headers.extend(extra)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if head else body})

    @staticmethod
    async def _redirect(
        send: Send, status: int, location: str, extra: list[tuple[bytes, bytes]] | None = None
    ) -> None:
        headers = [(b"location", location.encode("latin-1")), _NO_STORE, _EMPTY]
        if extra:
            headers.extend(extra)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b""})

    # -- the request ---------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # A fault (the database on a cache miss, a full disk under the click spool, a live
        # code's write) is logged with a request id and answered with a Chinese page: 503 +
        # Retry-After when transient, 500 otherwise (kit/faults.py).
        await guard(self._serve, scope, receive, send, html_page=pages.error_page)

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        method: str = scope["method"]
        head = method == "HEAD"
        if method != "GET" and not head and method != "POST":
            await self._page(send, 405, b"", False, [(b"allow", b"GET, HEAD, POST")])
            return
        slug: str = scope["path"][1:]
        if slug.endswith("/"):
            slug = slug[:-1]
        now = time.time()
        user_agent = cookie = referrer = ""
        for name, value in scope["headers"]:
            if name == b"user-agent":
                user_agent = value.decode("latin-1")
            elif name == b"cookie":
                cookie = value.decode("latin-1")
            elif name == b"referer":
                referrer = value.decode("latin-1")
        visitor_id = _cookie(cookie, VISITOR_COOKIE) if _VID_MARK in cookie else None
        new_visitor = visitor_id is None or not valid_id(visitor_id)
        client = scope.get("client")
        ip: str = client[0] if client else ""
        if self.proxies is not None and ip:
            ip = self.proxies.from_headers(ip, scope["headers"])
        # Per IP and per (returning) visitor, before anything costs more (a cache miss).
        known = None if new_visitor else visitor_id
        if self.limiter.shared is None:
            wait = self.limiter.visit_local(ip, known, now)
        else:
            wait = await self.limiter.visit(ip, known, now)
        if wait:
            await self._page(
                send,
                429,
                pages.TOO_MANY,
                head,
                [(b"retry-after", retry_after_header(wait).encode())],
            )
            return

        hit = self.cache.get(slug, now)
        entry: Entry | None
        if hit is False:
            # Malformed slugs never reach the database (nor the negative cache).
            entry = await self.cache.load(slug) if SLUG_RE.match(slug) else None
        else:
            entry = hit  # type: ignore[assignment]
        if entry is None:
            await self._page(send, 404, pages.NOT_FOUND, head)
            return

        info, client_fragment = self.recorder.client(user_agent)
        if new_visitor:
            visitor_id = new_id()
        assert visitor_id is not None

        if entry.kind == KIND_LIVE_CODE:
            await self._live_code(
                entry, scope, receive, send, info, visitor_id, ip, referrer, new_visitor
            )
            return

        if entry.max_clicks is not None and not self.counter.is_seeded(entry.id):
            await self.counter.ensure_seeded(entry.id)
        is_bot = info.is_bot or head
        unlocked = entry.password_hash is not None and check_unlock(
            self.secret, entry, _cookie(cookie, unlock_cookie_name(slug)), now
        )
        outcome = gate(
            entry,
            now=now,
            spent=entry.max_clicks is not None and self.counter.spent(entry),
            platform=info.platform,
            unlocked=unlocked,
        )
        if outcome is not None:
            await self._refuse(outcome, entry, slug, scope, receive, send, head, info.platform, ip)
            return

        dest = choose(
            entry,
            visitor_id=visitor_id,
            os=info.os,
            android_compatible=info.os == "harmonyos" and "ndroid" in user_agent,
        )
        if not is_bot and entry.max_clicks is not None and not await self.counter.consume(entry):
            await self._refuse(Outcome.EXPIRED, entry, slug, scope, receive, send, head, "")
            return
        click_id = new_id()
        query: bytes = scope["query_string"]
        line = self.recorder.line(
            entry,
            now=now,
            click_id=click_id,
            visitor_id=visitor_id,
            info=info,
            client_fragment=client_fragment,
            head=head,
            referrer=referrer,
            ip=ip,
            is_qr=has_qr_flag(query),
            user_id=person_from_query(query, self.secret) if PERSON_PARAM_EQ in query else None,
        )
        try:
            self.recorder.record(line)
        except SpoolWriteError:
            # Disk full: a redirect whose click is not on disk is not answered (the visitor
            # retries; nothing is counted twice or lost).
            rid = request_id(scope)
            log.error(
                "request %s: redirect /%s: click not recorded, answered 503", rid, slug,
                exc_info=True,
            )  # fmt: skip
            retry = [(b"retry-after", RETRY_AFTER_SPOOL), (REQUEST_ID_HEADER, rid.encode())]
            await self._page(send, 503, pages.UNAVAILABLE, head, retry)
            return
        extra = None
        if new_visitor:
            extra = [(b"set-cookie", self._visitor_cookie(visitor_id, scope))]
        await self._redirect(send, 302, dest[0] + click_id + dest[1], extra)

    @staticmethod
    def _visitor_cookie(visitor_id: str, scope: Scope) -> bytes:
        return visitor_cookie(visitor_id, secure=scope.get("scheme") == "https")

    async def _refuse(
        self,
        outcome: Outcome,
        entry: Entry,
        slug: str,
        scope: Scope,
        receive: Receive,
        send: Send,
        head: bool,
        platform: str,
        ip: str = "",
    ) -> None:
        if outcome is Outcome.EXPIRED:
            if entry.expired_url:
                await self._redirect(send, 302, entry.expired_url)
            else:
                await self._page(send, 410, pages.GONE, head)
        elif outcome is Outcome.NOT_ALLOWED:
            assert entry.allowed is not None
            allowed = [p for p in pages.PLATFORM_NAMES if p in entry.allowed]
            await self._page(send, 403, pages.platform_page(platform, allowed), head)
        elif outcome is Outcome.GUIDE:
            await self._page(send, 200, pages.guide_page(platform), head)
        elif scope["method"] == "POST":
            await self._unlock(entry, slug, scope, receive, send, ip)
        else:
            await self._page(send, 200, pages.password_page(self._self_url(slug, scope)), head)

    @staticmethod
    def _self_url(slug: str, scope: Scope) -> str:
        query: bytes = scope["query_string"]
        return "/" + slug + ("?" + query.decode("latin-1") if query else "")

    async def _unlock(
        self, entry: Entry, slug: str, scope: Scope, receive: Receive, send: Send, ip: str
    ) -> None:
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # client went away
            body += message.get("body", b"")
            if len(body) > MAX_FORM_BYTES:
                await self._page(send, 413, b"", False)
                return
            if not message.get("more_body", False):
                break
        form = parse_qs(body.decode("utf-8", "replace"), max_num_fields=8)
        password = (form.get("password") or [""])[0]
        assert entry.password_hash is not None
        # Wrong guesses are counted per link and IP: a few are free, then each waits.
        guesses, rate = f"pw:{entry.id}:{ip}", self.limiter.limits.password
        now = time.time()
        wait = await self.limiter.hit(guesses, rate, now, consume=False)
        if wait:
            await self._locked(send, wait)
            return
        # argon2 is deliberately slow (and memory-hard): keep it off the event loop.
        ok = bool(password) and await asyncio.to_thread(
            verify_password, entry.password_hash, password
        )
        here = self._self_url(slug, scope)
        if not ok:
            await self.limiter.hit(guesses, rate, now)
            await self._page(send, 403, pages.password_page(here, wrong=True), False)
            return
        secure = "; Secure" if scope.get("scheme") == "https" else ""
        cookie = (
            f"{unlock_cookie_name(slug)}={unlock_token(self.secret, entry, time.time())}; "
            f"Max-Age={UNLOCK_SECONDS}; Path=/{slug}; HttpOnly; SameSite=Lax{secure}"
        )
        # 303: the browser repeats the visit as a GET, which now passes the password rule and
        # goes through the same rules (and click capture) as every other visit.
        await self._redirect(send, 303, here, [(b"set-cookie", cookie.encode())])

    async def _locked(self, send: Send, wait: float) -> None:
        minutes = max(1, int(wait + 59) // 60)
        await self._page(
            send,
            429,
            pages.locked_page(minutes),
            False,
            [(b"retry-after", retry_after_header(wait).encode())],
        )

    # -- live codes ----------------------------------------------------------------------

    def _live_code_server_fn(self) -> LiveCodeServer | None:
        if self._live_code_server is None:
            try:
                from liebian.links.live_codes.serve import serve_live_code
            except ImportError:
                return None
            self._live_code_server = serve_live_code
        return self._live_code_server

    async def _live_code(
        self,
        entry: Entry,
        scope: Scope,
        receive: Receive,
        send: Send,
        info: Any,
        visitor_id: str,
        ip: str,
        referrer: str,
        new_visitor: bool,
    ) -> None:
        server = self._live_code_server_fn()
        if server is None:
            await self._page(send, 404, pages.NOT_FOUND, scope["method"] == "HEAD")
            return
        visitor = Visitor(
            ip=ip,
            user_agent=next(
                (v.decode("latin-1") for k, v in scope["headers"] if k == b"user-agent"), ""
            ),
            platform="bot" if info.is_bot else info.platform,
            device=info.device,
            os=info.os,
            browser=info.browser,
            is_bot=info.is_bot or scope["method"] == "HEAD",
            visitor_id=visitor_id,
            referrer=referrer,
            new_visitor=new_visitor,
        )
        await server(self.runtime, entry.id, visitor, scope, receive, send)


def install(runtime: Runtime) -> RedirectApp:
    """Build the redirect app for this process and hook it into the runtime.

    Registers ``runtime.extras["redirect_app"]`` (the dispatcher's target for short paths) and
    the stats router, and subscribes the cache to ``slug.changed``. Needs the event pipeline
    (``runtime.spool`` / ``runtime.event_store``) to be open already.
    """
    from liebian.redirect.cache import DEFAULT_CAPACITY, SlugLoader
    from liebian.redirect.stats_api import human_clicks
    from liebian.redirect.stats_api import router as stats_router

    if runtime.spool is None:
        raise RuntimeError("the redirect app needs runtime.spool; wire the event pipeline first")
    capacity = int(runtime.extras.get("redirect_cache_capacity", DEFAULT_CAPACITY))
    cache = LinkCache(SlugLoader(runtime.engine), capacity=capacity)
    cache.subscribe(runtime.bus)
    counter = ClickCounter(
        lambda link_id: human_clicks(runtime, link_id),
        redis_url=runtime.settings.redis_url,
        prefix=runtime.settings.redis_prefix,
    )
    recorder = ClickRecorder(runtime.spool, runtime.secret)
    app = RedirectApp(runtime, cache, recorder, counter)
    # The flusher (started after wiring) holds click loads back during bursts of redirects.
    burst = ClickBurst(lambda: recorder.recorded)
    runtime.extras["defer_loads"] = burst
    _bound_embedded_store(runtime, burst)
    runtime.extras["redirect_app"] = app
    runtime.extras["record_click"] = scan_recorder(runtime.spool, runtime.secret)
    runtime.extras.setdefault("routers", []).append(stats_router)
    return app


def _bound_embedded_store(runtime: Runtime, burst: ClickBurst) -> None:
    """Keep the embedded DuckDB from crowding the redirect out of a small machine: one thread
    and a 96 MB pool between analytics queries, more while one runs — the memory only, while
    redirects arrive in a burst (duckdb_budget.py)."""
    store = runtime.event_store
    if store is None or store.dialect != "duckdb" or "duckdb_budget" in runtime.extras:
        return
    connection = getattr(store, "connection", None)
    if connection is None:
        return
    budget = DuckDBBudget(
        connection, query_memory_mb=runtime.settings.analytics_memory_mb, serving_first=burst
    )
    budget.apply_idle()
    runtime.extras["duckdb_budget"] = budget
