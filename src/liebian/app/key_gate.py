"""Wrong API keys answered before the framework (issue 9, decision 0040).

Every API request through FastAPI costs the event loop ~0.4–1.5 ms of routing, dependency and
validation work before its principal is even asked; the redirect waits behind it. A request
whose key the key cache can already refuse — a string not shaped like a key, a wrong key
refused in the last seconds, an unknown key from an address that sent too many — gets the same
401 or 429 from here, in the API's error shape, for a header scan and a dict lookup; so does an
analytics query of a workspace whose analytics budget is spent (analytics/admission.py).

Only operations that take a principal are answered here: the few public ``/api`` routes (sign-in,
invitations, WeCom callbacks, signed live-code images, webhook topics) ignore an
``Authorization`` header, and still do. Which routes those are is read from the app's own
routes once, at start.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, MutableMapping
from typing import Any

from fastapi import FastAPI
from starlette.routing import compile_path

from liebian.analytics.admission import AnalyticsAdmission
from liebian.app.deps import get_principal, principal_on_loop
from liebian.kit.client_ip import client_ip
from liebian.kit.errors import DomainError
from liebian.workspaces.key_cache import KeyCache

Scope = MutableMapping[str, Any]
API_PREFIX = "/api/"
ANALYTICS_PREFIX = "/api/v1/analytics/"


class KeyGate:
    def __init__(
        self,
        api: FastAPI,
        keys: KeyCache,
        trusted_proxies: list[str],
        admission: AnalyticsAdmission,
    ) -> None:
        self.keys = keys
        self.trusted = trusted_proxies
        self.admission = admission
        self.public: list[re.Pattern[str]] = [
            compile_path(path)[0]
            for path, dependant in _routes(api.router.routes)
            if path.startswith(API_PREFIX) and not _takes_principal(dependant)
        ]

    def refusal(self, scope: Scope) -> DomainError | None:
        """The 401/429 the API would answer for this request's key, when the cache knows it
        already; None to let the API decide (a valid or unknown key, no key, a public route)."""
        header = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                header = value
                break
        if header is None:
            return None
        scheme, _, token = header.decode("latin-1").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return None
        keys = self.keys
        principal = keys.get(token)
        if principal is not None:
            if scope["path"].startswith(ANALYTICS_PREFIX) and scope["method"] == "POST":
                # An analytics query the workspace may not start now: no parsing either.
                return self.admission.peek(principal.workspace_id)
            return None
        refused = keys.refusal_for(token, client_ip(scope, self.trusted))
        if refused is None:
            return None
        path: str = scope["path"]
        if any(rx.match(path) for rx in self.public):
            return None
        return refused


def _routes(routes: list[Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(full path, dependant) of every API route, through included routers."""
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from _routes(included.routes, prefix + route.include_context.prefix)
        elif getattr(route, "dependant", None) is not None:
            yield prefix + route.path, route.dependant


def _takes_principal(dependant: Any) -> bool:
    for sub in dependant.dependencies:
        if sub.call in (principal_on_loop, get_principal) or _takes_principal(sub):
            return True
    return False
