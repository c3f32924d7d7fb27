"""Issue 9, item 1: nobody can freeze the server by making it wait for the writer lock.

The shape that froze it: a request holds the SQLite writer lock (its session began a write
transaction in a worker thread) and can only commit through the event loop (FastAPI commits in
the dependency's teardown, scheduled by the loop), while the loop itself waits for that lock —
a bogus API key looked up on the loop, an analytics request reading the workspace's zone or
its spend on the loop. Every request then stalled for the 30 s lock timeout and answered 500.

Here a real server (uvicorn on loopback) has a request that holds the writer lock for as long
as the test wants. While it holds it, from several threads at once: participant pages,
/healthz, a bogus key on the lean ingestion path, analytics counts and CAC, all answered
correctly — and only then is the holder let go, after which it and a writer that queued
behind it both commit. Nothing is timed: the test releases the lock only after every answer
came back, so on the old code it fails (500s after the lock's timeout) instead of passing.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from fastapi import APIRouter
from sqlalchemy import event, text

from browser_support import live_server
from liebian.app.deps import SessionDep
from liebian.app.factory import create_app
from liebian.app.runtime import Runtime

INVITE = {
    "tiers": [{"invites": 1, "reward": {"kind": "coupon", "name": "5元券", "amount": 500}}],
    "qualifying_action": "signup",
}
RANGE = {"from": "2026-03-01T00:00:00+08:00", "to": "2026-03-03T00:00:00+08:00"}
# A hang guard for the old code, not a figure under test.
PATIENCE = httpx.Timeout(90.0)


class Holder:
    """A route that writes, then keeps its transaction — and the writer lock — open until
    released: the request whose commit needs the event loop."""

    def __init__(self) -> None:
        self.holding = threading.Event()
        self.release = threading.Event()
        self.router = APIRouter()

        @self.router.post("/api/v1/test-only/hold-the-writer-lock")
        def hold(session: SessionDep) -> dict[str, bool]:
            session.execute(text("UPDATE workspaces SET name = name"))
            self.holding.set()
            self.release.wait(120)
            return {"held": True}


@pytest.fixture
def served(settings: Any, runtime: Runtime) -> Iterator[tuple[str, Holder]]:
    holder = Holder()
    app = create_app(settings, runtime)
    app.api.include_router(holder.router)
    with live_server(app) as url:
        yield url, holder


def test_the_server_answers_while_a_request_holds_the_writer_lock(
    served: tuple[str, Holder], owner: dict[str, str], runtime: Runtime
) -> None:
    url, holder = served
    with httpx.Client(base_url=url, timeout=PATIENCE) as http:
        created = http.post(
            "/api/v1/campaigns",
            json={"type": "invite", "name": "邀请有礼", "config": INVITE},
            headers=owner,
        )
        assert created.status_code == 201, created.text
        cid = created.json()["id"]
        joined = http.post(
            f"/api/v1/campaigns/{cid}/participants", json={"external_id": "alice"}, headers=owner
        )
        assert joined.status_code == 201, joined.text
        page = f"/p/{cid}/{joined.json()['invite_code']}"

    key_lookups = []

    @event.listens_for(runtime.engine, "before_cursor_execute")
    def _count(_c: Any, _cur: Any, statement: str, *_: Any) -> None:
        if "FROM api_keys" in statement:
            key_lookups.append(statement)

    bogus = {"Authorization": "Bearer lb_" + "b" * 43}  # shaped like a key: looked up once

    def get(path: str) -> httpx.Response:
        with httpx.Client(base_url=url, timeout=PATIENCE) as c:
            return c.get(path)

    def post(path: str, body: Any, headers: dict[str, str]) -> httpx.Response:
        with httpx.Client(base_url=url, timeout=PATIENCE) as c:
            return c.post(path, json=body, headers=headers)

    def pages(n: int) -> list[int]:
        return [get(page).status_code for _ in range(n)]

    with ThreadPoolExecutor(max_workers=10) as pool:
        held = pool.submit(post, "/api/v1/test-only/hold-the-writer-lock", {}, owner)
        assert holder.holding.wait(60), "the holder never started"
        # A writer that must wait its turn (on SQLite); it may not fail for waiting.
        queued_writer = pool.submit(
            post, "/api/v1/links", {"url": "https://example.com/after"}, owner
        )
        loops = [pool.submit(pages, 5) for _ in range(3)]
        refused = [pool.submit(post, "/api/v1/events", {"event": "x"}, bogus) for _ in range(2)]
        health = pool.submit(get, "/healthz")
        counts = pool.submit(post, "/api/v1/analytics/counts", RANGE, owner)
        cac = pool.submit(post, "/api/v1/analytics/cac", RANGE, owner)

        # All answered while the lock is still held: none of them waited for it.
        assert health.result().status_code == 200
        for loop in loops:
            assert loop.result() == [200] * 5
        for answer in (r.result() for r in refused):
            assert answer.status_code == 401, answer.text
            assert answer.json()["error"]["code"] == "invalid_api_key"
        assert counts.result().status_code == 200, counts.result().text
        assert cac.result().status_code == 200, cac.result().text
        assert held.running() and not holder.release.is_set()

        holder.release.set()
        assert held.result().status_code == 200
        assert queued_writer.result().status_code == 201, queued_writer.result().text

    # The second bogus request was refused from the negative cache (one database read at most
    # for the two: they may have raced to it).
    assert 1 <= len(key_lookups) <= 2
    with httpx.Client(base_url=url, timeout=PATIENCE) as http:
        again = http.post("/api/v1/events", json={"event": "x"}, headers=bogus)
    assert again.status_code == 401
    assert len(key_lookups) <= 2
