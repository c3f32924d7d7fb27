"""An address that sends too many wrong API keys is throttled before the database (issue 9,
decision 0040): each unknown key-shaped key costs a read, so after the address's budget the
next unknown key gets 429 with Retry-After and no read — on the API and on the lean ingestion
path alike — while a key the cache already knows keeps working from there."""

from __future__ import annotations

import secrets
import string
from typing import Any

from sqlalchemy import event

from liebian.app.runtime import Runtime
from liebian.kit.ratelimit import Rate

_ALPHABET = string.ascii_letters + string.digits + "-_"


def _wrong_key() -> str:
    """Shaped like a key (lb_ and 43 URL-safe characters), but no key."""
    return "lb_" + "".join(secrets.choice(_ALPHABET) for _ in range(43))


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_too_many_wrong_keys_from_one_address_get_429_without_a_read(
    client: Any, runtime: Runtime, owner: dict[str, str]
) -> None:
    cache = runtime.extras["key_cache"]
    cache.wrong_keys = Rate(3, 60.0)
    assert client.get("/api/v1/links", headers=owner).status_code == 200  # owner's key cached
    reads: list[str] = []

    @event.listens_for(runtime.engine, "before_cursor_execute")
    def _count(_c: Any, _cur: Any, statement: str, *_: Any) -> None:
        if "FROM api_keys" in statement:
            reads.append(statement)

    for _ in range(3):
        answer = client.get("/api/v1/links", headers=_bearer(_wrong_key()))
        assert answer.status_code == 401
        assert answer.json()["error"]["code"] == "invalid_api_key"
    assert len(reads) == 3

    # The budget is spent: the next unknown keys are refused before any read, on the API and
    # on the lean ingestion path.
    throttled = client.get("/api/v1/links", headers=_bearer(_wrong_key()))
    assert throttled.status_code == 429
    error = throttled.json()["error"]
    assert error["code"] == "too_many_wrong_keys"
    assert "check the key" in error["message"]
    assert int(throttled.headers["retry-after"]) >= 1
    ingest = client.post(
        "/api/v1/events", json=[{"event": "page_view"}], headers=_bearer(_wrong_key())
    )
    assert ingest.status_code == 429
    assert ingest.json()["error"]["code"] == "too_many_wrong_keys"
    assert len(reads) == 3

    # A key this process already knows still works from the throttled address — also once
    # its cache entry has expired (it is looked up again, not refused).
    assert client.get("/api/v1/links", headers=owner).status_code == 200
    for digest, (principal, _until) in list(cache._entries.items()):
        cache._entries[digest] = (principal, 0.0)
    assert client.get("/api/v1/links", headers=owner).status_code == 200
    assert len(reads) == 4
    accepted = client.post(
        "/api/v1/events",
        json=[{"event": "page_view", "user_id": "u1", "event_id": "e1"}],
        headers=owner,
    )
    assert accepted.status_code == 202
    assert cache.throttled_count == 2
    metrics = _loopback_metrics(client)
    assert "liebian_wrong_key_throttled_total 2.0" in metrics


def test_the_throttle_counts_wrong_keys_only(client: Any, runtime: Runtime) -> None:
    """A repeated wrong key (remembered, no read) and strings not shaped like a key (no read)
    spend nothing of the address's budget; the budget off (limit 0) never throttles."""
    cache = runtime.extras["key_cache"]
    cache.wrong_keys = Rate(2, 60.0)
    same = _wrong_key()
    for _ in range(5):
        assert client.get("/api/v1/links", headers=_bearer(same)).status_code == 401
    for _ in range(5):
        assert client.get("/api/v1/links", headers=_bearer("lb_short")).status_code == 401
    assert client.get("/api/v1/links", headers=_bearer(_wrong_key())).status_code == 401
    assert client.get("/api/v1/links", headers=_bearer(_wrong_key())).status_code == 429
    cache.wrong_keys = Rate(0, 60.0)
    for _ in range(4):
        assert client.get("/api/v1/links", headers=_bearer(_wrong_key())).status_code == 401


def _loopback_metrics(client: Any) -> str:
    """/metrics as the loopback interface sees it (the test client's address is not one)."""
    from fastapi.testclient import TestClient

    return TestClient(client.app, client=("127.0.0.1", 50000)).get("/metrics").text


def test_keys_the_cache_can_refuse_are_answered_before_the_framework(
    client: Any, runtime: Runtime, owner: dict[str, str]
) -> None:
    """The same 401/429 as the API's, without FastAPI's routing (app/key_gate.py); a public
    route ignores a wrong key as it always did; a key the cache cannot judge goes through."""
    assert client.get("/api/v1/links", headers=owner).status_code == 200  # owner's key cached
    dispatcher = client.app
    reached: list[str] = []
    api = dispatcher.api

    async def counting(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            reached.append(scope["path"])
        await api(scope, receive, send)

    dispatcher.api = counting
    runtime.extras["key_cache"].wrong_keys = Rate(1, 60.0)
    unknown = _wrong_key()
    first = client.get("/api/v1/links", headers=_bearer(unknown))  # the database's answer
    assert first.status_code == 401 and reached == ["/api/v1/links"]
    again = client.get("/api/v1/links", headers=_bearer(unknown))  # remembered
    assert again.status_code == 401 and again.json() == first.json()
    torn = client.post("/api/v1/links", json={}, headers=_bearer("lb_bogus"))  # not a key
    assert torn.status_code == 401
    assert torn.json()["error"]["message"].startswith("this is not a whole API key")
    spent = client.get("/api/v1/segments", headers=_bearer(_wrong_key()))  # address throttled
    assert spent.status_code == 429 and spent.headers["retry-after"]
    assert reached == ["/api/v1/links"]
    # Public routes ignore the header, as before; a known key and no key go through.
    topics = client.get("/api/v1/webhooks/topics", headers=_bearer("lb_bogus"))
    assert topics.status_code == 200
    assert client.get("/api/v1/links", headers=owner).status_code == 200
    assert client.get("/api/v1/links").status_code == 401
    assert reached[1:] == ["/api/v1/webhooks/topics", "/api/v1/links", "/api/v1/links"]
