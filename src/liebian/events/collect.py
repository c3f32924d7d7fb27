"""Browser collection: ``/t.js`` and the public ``/collect`` endpoint it beacons to.

No API key can live in a landing page, so ``/collect`` is public and deliberately narrow: it
takes visitor-level events only (no user_id, no revenue, no aliases), refuses the names of
conversion events (purchase, signup, refund…, :data:`SERVER_ONLY_EVENTS`) and money-like
properties, and is rate-limited per IP and visitor. Anything that moves money or identity
comes from the brand's server with a key, so a forged beacon can inflate page views at worst,
never revenue, conversions or rewards.
"""

from __future__ import annotations

import json
import math
import time
from importlib.resources import files
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import ValidationError

from liebian.app.deps import RuntimeDep
from liebian.events.schemas import ONE_EVENT
from liebian.events.service import MAX_FUTURE_SKEW, serialize, spool_append
from liebian.kit.client_ip import client_ip
from liebian.kit.clock import utcnow
from liebian.kit.crypto import hash_ip
from liebian.kit.errors import Forbidden, Invalid, NotFound, RateLimited
from liebian.kit.ratelimit import Limiter, limiter_for
from liebian.links.platforms import classify_cached
from liebian.workspaces.repository import get_workspace

router = APIRouter(include_in_schema=False)
# Conversions count in revenue analytics and trigger campaign rewards: only the brand's server
# may send them (POST /api/v1/events with a key). Covers campaigns.conversions's
# CONVERSION_EVENTS (a test checks) and the usual names of money and sign-up events.
SERVER_ONLY_EVENTS = frozenset(
    {
        "purchase", "order_paid", "paid", "payment", "pay", "checkout_completed", "order",
        "order_completed", "refund", "signup", "sign_up", "register", "registration",
        "subscribe", "subscription", "join_group", "leave_group", "unfollow", "follow",
        "identify", "alias", "reward", "commission", "coupon_redeemed", "active",
    }
)  # fmt: skip
# Properties a page may not set: they would read as money or identity in analytics.
SERVER_ONLY_PROPERTIES = frozenset(
    {"revenue", "amount", "price", "currency", "order_id", "user_id", "external_id"}
)
_TRACKER = files("liebian.events").joinpath("static/t.js").read_bytes()
MAX_COLLECT_BYTES = 16 * 1024


@router.get("/t.js")
def tracker() -> Response:
    return Response(
        _TRACKER,
        media_type="application/javascript; charset=utf-8",
        headers={"cache-control": "public, max-age=3600"},
    )


def _known_workspace(runtime: Any, workspace_id: str) -> bool:
    known: set[str] = runtime.extras.setdefault("collect_workspaces", set())
    if workspace_id in known:
        return True
    with runtime.read_sessions() as session:
        if get_workspace(session, workspace_id) is None:
            return False
    known.add(workspace_id)
    return True


@router.post("/collect", status_code=204)
async def collect(request: Request, runtime: RuntimeDep) -> Response:
    raw = await request.body()
    if len(raw) > MAX_COLLECT_BYTES:
        raise Invalid(
            f"a beacon is at most {MAX_COLLECT_BYTES} bytes", code="too_large", status=413
        )
    try:
        body = json.loads(raw)
        if not isinstance(body, dict):
            raise ValueError("not an object")
    except (ValueError, RecursionError) as exc:
        # RecursionError: thousands of nested brackets are no beacon t.js sends.
        raise Invalid("beacon body must be a JSON object", code="malformed_json") from exc
    ip = client_ip(request.scope, runtime.settings.trusted_proxies)
    limiter: Limiter = runtime.extras.get("limiter") or runtime.extras.setdefault(
        "limiter", limiter_for(runtime.settings)
    )
    visitor = body.get("vid")
    wait = await limiter.visit(ip, visitor if isinstance(visitor, str) else None, time.time())
    if wait:
        raise RateLimited(
            "too many beacons from this address; wait before sending more",
            retry_after=math.ceil(wait),
        )
    name = body.get("e") or "page_view"
    if isinstance(name, str) and (name.lower() in SERVER_ONLY_EVENTS or name.startswith("$")):
        raise Forbidden(
            f"'{name}' is a conversion event: send it from your server with"
            " POST /api/v1/events and an API key, not from the page",
            code="server_only_event",
            details={"field": "e"},
        )
    workspace_id = str(body.get("w") or "")
    if not await run_in_threadpool(_known_workspace, runtime, workspace_id):
        raise NotFound("unknown workspace in data-workspace")
    properties = dict(body.get("p") or {}) if isinstance(body.get("p"), dict) else {}
    refused = sorted(SERVER_ONLY_PROPERTIES.intersection(k.lower() for k in properties))
    if refused:
        raise Forbidden(
            f"properties {', '.join(refused)} may only be sent from your server"
            " (POST /api/v1/events with an API key)",
            code="server_only_property",
            details={"field": "p." + refused[0]},
        )
    if body.get("url") and isinstance(body["url"], str):
        properties["url"] = body["url"][:2048]
    try:
        event = ONE_EVENT.validate_python(
            {
                "event": name,
                "event_id": body.get("id"),
                "visitor_id": body.get("vid"),
                "click_id": body.get("cid"),
                "ts": body.get("ts"),
                "properties": properties,
            }
        )
    except ValidationError as exc:
        raise Invalid(
            "beacon is not valid",
            details=[
                {"field": ".".join(map(str, e["loc"])), "problem": e["msg"]} for e in exc.errors()
            ],
        ) from exc
    now = utcnow()
    ts = event.get("ts")
    if ts is None or ts > now + MAX_FUTURE_SKEW:
        event["ts"] = now
    user_agent = request.headers.get("user-agent", "")
    client = classify_cached(user_agent)
    context = {
        "platform": client.platform,
        "device": client.device,
        "os": client.os,
        "browser": client.browser,
        "is_bot": client.is_bot,
        "referrer": (body["ref"][:1024] or None) if isinstance(body.get("ref"), str) else None,
        "ip_hash": hash_ip(ip, runtime.secret) if ip else None,
    }

    _events, lines, rejected = serialize(workspace_id, [(0, event)], now, context)
    if rejected:
        raise Invalid("beacon is not valid", details=rejected[0].errors)
    assert runtime.spool is not None
    spool_append(runtime.spool, lines[0])
    return Response(status_code=204, headers={"access-control-allow-origin": "*"})
