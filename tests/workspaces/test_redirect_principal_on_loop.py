"""The API's principal answered on the event loop when the key cache already knows the answer
(app/deps.py ``principal_on_loop``, issue 9): the same gate and the same refusals as the worker
thread's path, without its hand-off and without a database read."""

from __future__ import annotations

import dataclasses
from typing import Any

from sqlalchemy import event

from liebian.app.runtime import Runtime

# Shaped like a key, but no key: only the database can tell.
WRONG = "lb_" + "q" * 43


def test_a_cached_key_is_still_gated_by_its_custom_role(
    client: Any, runtime: Runtime, owner: dict[str, str]
) -> None:
    assert client.get("/api/v1/links", headers=owner).status_code == 200  # now cached
    cache = runtime.extras["key_cache"]
    token = owner["Authorization"].split(" ", 1)[1]
    cached = cache.get(token)
    assert cached is not None
    # The same key as if its owner now held a custom role with reading rights only.
    cache.put(token, dataclasses.replace(cached, permissions=frozenset({"links:read"})))
    assert client.get("/api/v1/links", headers=owner).status_code == 200
    refused = client.post("/api/v1/links", json={"url": "https://e.com"}, headers=owner)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "insufficient_permission"
    assert client.get("/api/v1/webhooks", headers=owner).status_code == 403


def test_a_repeated_wrong_key_gets_the_same_401_without_a_database_read(
    client: Any, runtime: Runtime
) -> None:
    reads: list[str] = []

    @event.listens_for(runtime.engine, "before_cursor_execute")
    def _count(_c: Any, _cur: Any, statement: str, *_: Any) -> None:
        if "FROM api_keys" in statement:
            reads.append(statement)

    headers = {"Authorization": f"Bearer {WRONG}"}
    answers = [client.get("/api/v1/links", headers=headers) for _ in range(3)]
    assert [a.status_code for a in answers] == [401, 401, 401]
    assert answers[0].json()["error"]["code"] == "invalid_api_key"
    assert answers[1].json()["error"] == answers[2].json()["error"] == answers[0].json()["error"]
    assert len(reads) == 1
    # Not shaped like a key: refused with a message that says what to check, no read either.
    torn = client.get("/api/v1/links", headers={"Authorization": f"Bearer {WRONG[:20]}"})
    assert torn.status_code == 401
    assert "copied in full" in torn.json()["error"]["message"]
    assert len(reads) == 1


def test_a_cached_custom_role_key_gets_no_join_or_help_without_campaigns_write(
    client: Any, runtime: Runtime, owner: dict[str, str]
) -> None:
    """The lean join/help path (campaigns/fast_path.py) and its FastAPI routes' own principal
    took a cached key at its rank alone: a custom role holding links:write (operator rank)
    could join groups and help assists without campaigns:write."""
    assert client.get("/api/v1/links", headers=owner).status_code == 200  # now cached
    cache = runtime.extras["key_cache"]
    token = owner["Authorization"].split(" ", 1)[1]
    cached = cache.get(token)
    assert cached is not None
    cache.put(token, dataclasses.replace(cached, permissions=frozenset({"links:write"})))
    for path, body in (
        ("/api/v1/groups/grp_nope/join", {"external_id": "u1"}),
        ("/api/v1/assists/ast_nope/help", {"external_id": "u1"}),
    ):
        refused = client.post(path, json=body, headers=owner)
        assert refused.status_code == 403, (path, refused.text)
        assert refused.json()["error"]["code"] == "insufficient_permission"
