"""Every domain's router, mounted under ``/api/v1``, plus health and pages."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI

from liebian.app.runtime import Runtime
from liebian.kit.schemas import error_responses


def include_routes(app: FastAPI, runtime: Runtime) -> None:
    from liebian.analytics.api import router as analytics_router
    from liebian.analytics.api import spend_router
    from liebian.events.api import router as events_router
    from liebian.links.api import router as links_router
    from liebian.workspaces.api import router as workspaces_router

    # Every operation under /api/v1 documents the usual error answers with the one error
    # schema, so clients and the fuzz test (tests/robustness) can hold each reply to the spec.
    v1 = APIRouter(prefix="/api/v1", responses=error_responses())
    v1.include_router(workspaces_router)
    v1.include_router(links_router)
    v1.include_router(events_router)
    v1.include_router(analytics_router)
    v1.include_router(spend_router)
    for router in runtime.extras.get("routers", []):
        v1.include_router(router)
    app.include_router(v1)
    from liebian.events.collect import router as collect_router

    app.include_router(collect_router)
    for router in runtime.extras.get("page_routers", []):
        app.include_router(router)
    from liebian.app.health import RequestStats, build_router

    stats = runtime.extras.setdefault("request_stats", RequestStats())
    app.include_router(build_router(runtime, stats))
