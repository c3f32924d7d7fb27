"""Issue 9, item 3: the framework-free paths (redirect, ingestion, joins/helps) log every
failure with a request id and answer in their own shape — a Chinese page for participants,
``{"error": …}`` for the API — with 503 + Retry-After when the fault is transient.

The faults are real: a table the query needs is gone (renamed away and back), the spool's
descriptor writes to /dev/full (the kernel's ENOSPC), a conversion hook raises.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import text

from liebian.app.runtime import Runtime
from liebian.kit.db import session_scope

REQUEST_ID = re.compile(r"req_[0-9A-Z]{26}")


@contextlib.contextmanager
def table_gone(runtime: Runtime, table: str) -> Iterator[None]:
    """``table`` renamed away for the block: every statement that needs it fails."""
    with session_scope(runtime.sessions) as session:
        session.execute(text(f"ALTER TABLE {table} RENAME TO {table}_gone"))
    try:
        yield
    finally:
        with session_scope(runtime.sessions) as session:
            session.execute(text(f"ALTER TABLE {table}_gone RENAME TO {table}"))


@contextlib.contextmanager
def disk_full(runtime: Runtime) -> Iterator[None]:
    """The spool's open segment writes to /dev/full for the block (ENOSPC from the kernel).

    Swapped in while the segment is empty: the spool rotates (closing the descriptor) only a
    segment that holds something, and no write succeeds in the block."""
    spool = runtime.spool
    assert spool is not None
    with spool._lock:
        if spool._size:
            spool._rotate_locked()
        if spool._fd < 0:  # segments open on their first write
            spool._open_segment()
        fd = spool._fd
        saved = os.dup(fd)
        full = os.open("/dev/full", os.O_WRONLY)
        os.dup2(full, fd)
        os.close(full)
    try:
        yield
    finally:
        with spool._lock:
            assert spool._fd == fd and spool._size == 0
            os.dup2(saved, fd)
            os.close(saved)


def _logged(caplog: pytest.LogCaptureFixture, rid: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if rid in r.getMessage() and r.exc_info]


def test_a_database_fault_on_a_redirect_miss_is_a_logged_chinese_page(
    client: Any, owner: dict[str, str], runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    link = client.post("/api/v1/links", json={"url": "https://example.com/x"}, headers=owner)
    slug = link.json()["slug"]
    with table_gone(runtime, "links"):
        resp = client.get(f"/{slug}", headers={"x-request-id": "trace-42"})
    assert resp.status_code == 500
    assert resp.headers["content-type"].startswith("text/html")
    assert "出错了" in resp.text and "trace-42" in resp.text
    assert resp.headers["x-request-id"] == "trace-42"
    assert _logged(caplog, "trace-42")
    # The table is back: the same slug redirects (the failure was not cached).
    assert client.get(f"/{slug}").status_code == 302


def test_a_full_disk_under_the_click_spool_is_503_with_retry_after(
    client: Any, owner: dict[str, str], runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    slug = client.post(
        "/api/v1/links", json={"url": "https://example.com/y"}, headers=owner
    ).json()["slug"]
    assert client.get(f"/{slug}").status_code == 302  # cached; the next visit is a pure hit
    with disk_full(runtime):
        resp = client.get(f"/{slug}")
        events = client.post("/api/v1/events", json={"event": "signup"}, headers=owner)
    assert resp.status_code == 503 and int(resp.headers["retry-after"]) >= 1
    assert resp.headers["content-type"].startswith("text/html") and "稍后" in resp.text
    rid = resp.headers["x-request-id"]
    assert REQUEST_ID.fullmatch(rid) and _logged(caplog, rid)
    # The ingestion path: same fault, the API's JSON shape.
    assert events.status_code == 503 and int(events.headers["retry-after"]) >= 1
    body = events.json()["error"]
    assert body["code"] == "unavailable"
    assert body["details"]["request_id"] == events.headers["x-request-id"]
    assert _logged(caplog, body["details"]["request_id"])
    assert client.get(f"/{slug}").status_code == 302  # the disk has room again


def test_a_key_lookup_fault_on_the_ingestion_path(
    client: Any, owner: dict[str, str], runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    with table_gone(runtime, "api_keys"):
        resp = client.post(
            "/api/v1/events",
            json={"event": "x"},
            headers={"Authorization": "Bearer lb_" + "u" * 43},  # well formed: looked up
        )
    assert resp.status_code == 500
    error = resp.json()["error"]
    assert error["code"] == "internal"
    assert _logged(caplog, error["details"]["request_id"])
    # (Conversion hooks no longer run on the request path: a durable hooks spool and its
    # worker apply them after the 202, decision 0018.)


def test_a_database_fault_on_a_join_is_logged_json(
    client: Any, owner: dict[str, str], runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    group_buy = {
        "product_name": "课程",
        "original_price": 9_900,
        "tiers": [{"size": 3, "price": 4_900}],
        "time_limit_hours": 24,
    }
    cid = client.post(
        "/api/v1/campaigns",
        json={"type": "group_buy", "name": "拼团", "config": group_buy},
        headers=owner,
    ).json()["id"]
    opened = client.post(
        f"/api/v1/campaigns/{cid}/groups", json={"leader_external_id": "leader"}, headers=owner
    )
    assert opened.status_code == 201, opened.text
    gid = opened.json()["group_id"]
    with table_gone(runtime, "campaign_groups"):
        resp = client.post(f"/api/v1/groups/{gid}/join", json={"external_id": "m1"}, headers=owner)
    assert resp.status_code == 500, resp.text
    rid = resp.json()["error"]["details"]["request_id"]
    assert resp.headers["x-request-id"] == rid and _logged(caplog, rid)
    assert client.get(f"/api/v1/groups/{gid}", headers=owner).status_code == 200  # back
