"""Connects communities to the runtime: its routers, its event sink, its bus subscribers."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from liebian.app.runtime import Runtime


def install(runtime: Runtime) -> None:
    from liebian.communities import events
    from liebian.communities.api import router
    from liebian.communities.pages import preview_router
    from liebian.communities.pages import router as page_router

    runtime.extras["routers"].append(router)
    runtime.extras["page_routers"].append(page_router)
    runtime.extras["page_routers"].append(preview_router)
    events.install(runtime)
    from liebian.communities import wecom_sync

    wecom_sync.install(runtime)
    from liebian.communities import welcome

    welcome.install(runtime)
