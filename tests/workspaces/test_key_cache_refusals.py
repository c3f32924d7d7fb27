"""Refused API keys are remembered briefly and boundedly (issue 9): a repeated wrong key costs
no database read, and a flood of distinct wrong keys cannot grow the table without bound."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import event

from liebian.app.deps import lookup_key
from liebian.app.runtime import Runtime
from liebian.kit.auth import Role, generate_api_key, is_well_formed_api_key
from liebian.kit.db import session_scope
from liebian.kit.errors import Unauthorized
from liebian.workspaces.key_cache import KeyCache
from liebian.workspaces.service import create_api_key

# Shaped like a key, but no key: only the database can tell.
WRONG = "lb_" + "w" * 43


def _count_key_reads(runtime: Runtime) -> list[str]:
    reads: list[str] = []

    @event.listens_for(runtime.engine, "before_cursor_execute")
    def _count(_c: Any, _cur: Any, statement: str, *_: Any) -> None:
        if "FROM api_keys" in statement:
            reads.append(statement)

    return reads


def test_a_wrong_key_is_read_once_then_refused_from_memory(
    runtime: Runtime, owner: dict[str, str]
) -> None:
    cache = KeyCache()
    lookup = lookup_key(runtime)
    reads = _count_key_reads(runtime)
    for _ in range(5):
        with pytest.raises(Unauthorized) as refused:
            cache.resolve(WRONG, lookup)
        assert refused.value.code == "invalid_api_key"
    assert len(reads) == 1
    # A real key is unaffected, and cached in turn.
    token = owner["Authorization"].split(" ", 1)[1]
    assert cache.resolve(token, lookup).workspace_id
    assert cache.resolve(token, lookup).workspace_id
    assert len(reads) == 2
    # Revocation (api_key.revoked) empties both tables.
    cache.clear()
    with pytest.raises(Unauthorized):
        cache.resolve(WRONG, lookup)
    assert len(reads) == 3


def test_refusals_expire_and_stay_bounded(runtime: Runtime) -> None:
    cache = KeyCache(negative_ttl=-1.0)  # already expired when stored
    lookup = lookup_key(runtime)
    reads = _count_key_reads(runtime)
    for _ in range(3):
        with pytest.raises(Unauthorized):
            cache.resolve(WRONG, lookup)
    assert len(reads) == 3
    bounded = KeyCache(negative_capacity=10)
    for i in range(25):
        bounded.refuse(f"lb_{i}", Unauthorized("no", code="invalid_api_key"))
    assert len(bounded._refused) <= 10
    assert bounded.refusal("lb_24") is not None


@pytest.mark.parametrize(
    "token",
    ["lb_bogus", "lb_" + "x" * 42, "lb_" + "x" * 44, "lb_" + "x" * 42 + "!", "sk_" + "x" * 43, "x"],
)
def test_a_string_not_shaped_like_a_key_is_refused_without_a_read(
    runtime: Runtime, token: str
) -> None:
    cache = KeyCache()
    reads = _count_key_reads(runtime)
    with pytest.raises(Unauthorized) as refused:
        cache.resolve(token, lookup_key(runtime))
    assert "lb_" in refused.value.message  # says what a key looks like
    assert cache.get(token) is None and cache.refusal(token) is not None
    assert reads == [] and cache._refused == {}  # nothing read, nothing remembered


def test_made_keys_are_well_formed() -> None:
    assert all(is_well_formed_api_key(generate_api_key()) for _ in range(200))


def test_a_key_created_after_wrong_attempts_is_accepted_at_once(
    runtime: Runtime, owner: dict[str, str]
) -> None:
    cache = KeyCache()
    lookup = lookup_key(runtime)
    for token in (WRONG, "lb_bogus", generate_api_key()):
        with pytest.raises(Unauthorized):
            cache.resolve(token, lookup)
    ws = lookup(owner["Authorization"].split(" ", 1)[1]).workspace_id
    with session_scope(runtime.sessions) as session:
        _key, plaintext = create_api_key(session, ws, Role.analyst, "after the guesses")
    assert cache.resolve(plaintext, lookup).role == Role.analyst


def test_a_revoked_key_is_refused_at_once(client: Any, owner: dict[str, str]) -> None:
    created = client.post("/api/v1/keys", json={"role": "operator"}, headers=owner).json()
    key = {"Authorization": f"Bearer {created['key']}"}
    event = {"event": "page_view", "visitor_id": "v1"}
    # Cached by both paths (the lean ingestion path and the framework's), then revoked.
    assert client.post("/api/v1/events", json=event, headers=key).status_code == 202
    assert client.get("/api/v1/workspace", headers=key).status_code == 200
    assert client.delete(f"/api/v1/keys/{created['id']}", headers=owner).status_code == 200
    assert client.post("/api/v1/events", json=event, headers=key).status_code == 401
    assert client.get("/api/v1/workspace", headers=key).status_code == 401
