"""Every domain's router, mounted under ``/api/v1``, plus health and pages."""

from __future__ import annotations

from fastapi import FastAPI

from liebian.app.runtime import Runtime
from liebian.kit.schemas import error_responses


def include_routes(app: FastAPI, runtime: Runtime) -> None:
    from liebian.analytics.api import router as analytics_router
    from liebian.analytics.api import spend_router
    from liebian.app.health import RequestStats, build_router
    from liebian.events.api import router as events_router
    from liebian.links.api import router as links_router
    from liebian.workspaces.api import router as workspaces_router

    # Health first: the router tries routes in order, and a probe should not walk the ~300
    # routes of the API before its own (it did: ~1 ms of the event loop per /healthz).
    stats = runtime.extras.setdefault("request_stats", RequestStats())
    app.include_router(build_router(runtime, stats))
    # Every operation under /api/v1 documents the usual error answers with the one error
    # schema, so clients and the fuzz test (tests/robustness) can hold each reply to the spec.
    # Each router is included in the app itself, with the prefix, not in an /api/v1 router
    # included in turn: this FastAPI matches nested routers level by level and recomputes the
    # tree's routes version at each, which cost ~0.5 ms of the event loop per API request
    # (docs/benchmarks.md, issue 9). Same paths, same order, same OpenAPI.
    errors = error_responses()
    for router in (
        workspaces_router,
        links_router,
        events_router,
        analytics_router,
        spend_router,
        *runtime.extras.get("routers", []),
    ):
        app.include_router(router, prefix="/api/v1", responses=errors)
    from liebian.events.collect import router as collect_router

    app.include_router(collect_router)
    for router in runtime.extras.get("page_routers", []):
        app.include_router(router)
