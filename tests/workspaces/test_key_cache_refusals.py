"""Refused API keys are remembered briefly and boundedly (issue 9): a repeated wrong key costs
no database read, and a flood of distinct wrong keys cannot grow the table without bound."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import event

from liebian.app.deps import lookup_key
from liebian.app.runtime import Runtime
from liebian.kit.errors import Unauthorized
from liebian.workspaces.key_cache import KeyCache


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
            cache.resolve("lb_wrong", lookup)
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
        cache.resolve("lb_wrong", lookup)
    assert len(reads) == 3


def test_refusals_expire_and_stay_bounded(runtime: Runtime) -> None:
    cache = KeyCache(negative_ttl=-1.0)  # already expired when stored
    lookup = lookup_key(runtime)
    reads = _count_key_reads(runtime)
    for _ in range(3):
        with pytest.raises(Unauthorized):
            cache.resolve("lb_wrong", lookup)
    assert len(reads) == 3
    bounded = KeyCache(negative_capacity=10)
    for i in range(25):
        bounded.refuse(f"lb_{i}", Unauthorized("no", code="invalid_api_key"))
    assert len(bounded._refused) <= 10
    assert bounded.refusal("lb_24") is not None
