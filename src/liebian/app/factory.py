"""Assembles the process: the lean redirect path in front, the FastAPI app for everything else.

Requests whose first path segment is reserved (``/api``, ``/admin``, ``/static``, …) go to
FastAPI; any other single-segment path is a short link and goes to the redirect app, which never
touches the framework or the database on a cache hit.
"""

from __future__ import annotations

import contextlib
import gc
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import FastAPI

from liebian.analytics.admission import admission_for
from liebian.app.errors import install_error_handlers
from liebian.app.health import RequestStats, route_class
from liebian.app.key_gate import API_PREFIX, KeyGate
from liebian.app.lifecycle import Component, start_components, stop_components
from liebian.app.limits import BodySizeLimit
from liebian.app.runtime import Runtime
from liebian.campaigns.fast_path import FissionWritesApp, fission_write
from liebian.campaigns.page_fast_path import PREFIXES as PAGES_PREFIX
from liebian.events.ingest_app import PATH as INGEST_PATH
from liebian.events.ingest_app import IngestApp
from liebian.kit.asgi import drain, send_domain_error
from liebian.kit.settings import Settings, get_settings
from liebian.links.slugs import RESERVED_SEGMENTS

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class Dispatcher:
    """Routes by the first path segment without parsing anything else."""

    def __init__(
        self,
        api: FastAPI,
        redirect: ASGIApp | None,
        ingest: ASGIApp | None = None,
        fission_writes: ASGIApp | None = None,
        pages: ASGIApp | None = None,
    ) -> None:
        self.api = api
        self.redirect = redirect
        self.ingest = ingest
        self.fission_writes = fission_writes
        self.pages = pages
        self.runtime: Runtime = api.state.runtime
        self.stats: RequestStats = self.runtime.extras.setdefault("request_stats", RequestStats())
        keys = self.runtime.extras.get("key_cache")
        self.key_gate = (
            KeyGate(
                api,
                keys,
                self.runtime.settings.trusted_proxies,
                admission_for(self.runtime.extras, self.runtime.settings),
            )
            if keys is not None
            else None
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.api(scope, receive, send)
            return
        app, route = self._route(scope)
        # Counted by route class and status for /metrics: one closure and two clock reads.
        status = 0

        async def observed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        started = time.perf_counter()
        try:
            gate = self.key_gate
            if app is self.api and gate is not None and scope["path"].startswith(API_PREFIX):
                refused = gate.refusal(scope)
                if refused is not None:
                    # Read (and drop) the body first: the connection stays usable.
                    complete = await drain(receive, self.runtime.settings.max_body_bytes)
                    await send_domain_error(observed_send, refused, close=not complete)
                    return
            await app(scope, receive, observed_send)
        finally:
            self.stats.observe(route, status, time.perf_counter() - started)

    def _route(self, scope: Scope) -> tuple[ASGIApp, str]:
        path: str = scope["path"]
        if self.ingest is not None and path == INGEST_PATH and scope["method"] == "POST":
            return self.ingest, "ingest"
        if (
            self.fission_writes is not None
            and scope["method"] == "POST"
            and fission_write(path) is not None
        ):
            return self.fission_writes, "fission_write"
        if self.pages is not None and path.startswith(PAGES_PREFIX) and scope["method"] == "GET":
            return self.pages, "page"
        if self.redirect is not None:
            end = path.find("/", 1)
            first = path[1:] if end == -1 else path[1:end]
            if first not in RESERVED_SEGMENTS:
                return self.redirect, "redirect"
        return self.api, route_class(path)


def create_app(settings: Settings | None = None, runtime: Runtime | None = None) -> Dispatcher:
    settings = settings or get_settings()
    runtime = runtime or Runtime.build(settings)
    components: list[Component] = build_components(runtime)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await start_components(components)
        # Everything built so far (the app, SQLAlchemy, pydantic, DuckDB wrappers: a few
        # hundred thousand objects) lives as long as the process. Out of the collector's way,
        # a full collection no longer walks them all in the middle of a request: such pauses
        # of several ms showed in the redirect's p99.
        freeze = settings.gc_freeze
        if freeze:
            gc.collect()
            gc.freeze()
        try:
            yield
        finally:
            if freeze:
                gc.unfreeze()  # collectable again, so extension objects are freed at exit
            await stop_components(components)

    api = FastAPI(
        title="liebian API",
        version="0.1.0",
        description="裂变 — private-domain growth engine. Authenticate with `Authorization: Bearer lb_…`.",
        lifespan=lifespan,
        # /docs from files in the package, not a CDN (app/api_docs.py); no /redoc.
        docs_url=None,
        redoc_url=None,
    )
    api.state.runtime = runtime
    install_error_handlers(api)
    api.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    from liebian.app.routes import include_routes

    include_routes(api, runtime)
    from liebian.app import api_docs

    api_docs.install(api)
    _with_error_schemas(api)
    redirect = runtime.extras.get("redirect_app")
    return Dispatcher(
        api, redirect, IngestApp(runtime), _fission_writes(runtime, api), _pages(runtime, api)
    )


def _with_error_schemas(api: FastAPI) -> None:
    """The shared error schema, which every operation's error answers refer to
    (kit/schemas.py error_responses), goes into the generated OpenAPI components."""
    from liebian.kit.schemas import error_component_schemas

    generate = api.openapi

    def openapi() -> dict[str, Any]:
        if api.openapi_schema is None:
            schema = generate()
            schemas = schema.setdefault("components", {}).setdefault("schemas", {})
            for name, definition in error_component_schemas().items():
                schemas.setdefault(name, definition)
        return api.openapi_schema or schema

    api.openapi = openapi  # type: ignore[method-assign]


def _fission_writes(runtime: Runtime, api: FastAPI) -> ASGIApp | None:
    """The lean join/help path, only where the FastAPI routes it stands in for are mounted."""
    from liebian.campaigns.api import router as campaigns_router

    if campaigns_router not in runtime.extras.get("routers", []):
        return None
    return FissionWritesApp(runtime, fallback=api)


def _pages(runtime: Runtime, api: FastAPI) -> ASGIApp | None:
    """The lean participant pages, only where the page routes they stand in for are mounted."""
    from liebian.campaigns.page_fast_path import ParticipantPagesApp
    from liebian.campaigns.pages import router as pages_router

    if pages_router not in runtime.extras.get("page_routers", []):
        return None
    return ParticipantPagesApp(runtime, fallback=api)


def build_components(runtime: Runtime) -> list[Component]:
    """Background parts of the one process (spool flusher, scheduler), in start order."""
    from liebian.app.wiring import wire

    return wire(runtime)
