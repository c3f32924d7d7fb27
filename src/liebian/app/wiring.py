"""Connects the domains to the runtime: routers, the redirect app and background components.

Kept in one place so the whole process can be read top to bottom.
"""

from __future__ import annotations

from liebian.app.lifecycle import Component
from liebian.app.runtime import Runtime


def wire(runtime: Runtime) -> list[Component]:
    components: list[Component] = []
    runtime.extras.setdefault("routers", [])
    runtime.extras.setdefault("page_routers", [])
    return components
