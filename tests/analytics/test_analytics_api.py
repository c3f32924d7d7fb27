"""The analytics endpoints end to end: ingest through the API, query through the API.
Expected answers are worked out by hand from the fixture below."""

from __future__ import annotations

from typing import Any

import duckdb
import pytest

from testkit import make_key

# Asia/Shanghai local times (+08:00).
FIXTURE = [
    ("u1", "page_view", "2026-03-01T10:00:00+08:00", None, "wx"),
    ("u1", "signup", "2026-03-01T10:05:00+08:00", None, "wx"),
    ("u1", "purchase", "2026-03-01T10:30:00+08:00", 1000, "wx"),
    ("u1", "purchase", "2026-03-02T09:00:00+08:00", 500, "wx"),
    ("u2", "page_view", "2026-03-01T10:00:00+08:00", None, "wx"),
    ("u2", "signup", "2026-03-01T10:10:00+08:00", None, "wx"),
    ("u3", "page_view", "2026-03-01T10:00:00+08:00", None, "douyin"),
    ("u3", "purchase", "2026-03-01T10:20:00+08:00", 2000, "douyin"),  # skipped signup
    ("u4", "signup", "2026-03-01T11:00:00+08:00", None, "douyin"),  # never viewed
    ("u5", "page_view", "2026-03-01T10:00:00+08:00", None, "douyin"),
    ("u5", "signup", "2026-03-09T10:00:00+08:00", None, "douyin"),  # 8 days: outside 7-day window
]
RANGE = {"from": "2026-03-01T00:00:00+08:00", "to": "2026-03-11T00:00:00+08:00"}


@pytest.fixture
def loaded(client: Any, owner: dict[str, str], runtime: Any) -> dict[str, str]:
    events = [
        {
            "event": e,
            "event_id": f"{u}-{i}",
            "user_id": u,
            "ts": ts,
            "channel": ch,
            **({"revenue": r} if r else {}),
        }
        for i, (u, e, ts, r, ch) in enumerate(FIXTURE)
    ]
    assert client.post("/api/v1/events", json=events, headers=owner).json()["accepted"] == len(
        FIXTURE
    )
    runtime.flush_events()
    return owner


def test_funnel(client: Any, loaded: dict[str, str]) -> None:
    body = {
        "steps": [{"event": "page_view"}, {"event": "signup"}, {"event": "purchase"}],
        "window_seconds": 7 * 86400,
        **RANGE,
    }
    resp = client.post("/api/v1/analytics/funnel", json=body, headers=loaded)
    assert resp.status_code == 200, resp.text
    steps = resp.json()["steps"]
    # page_view: u1 u2 u3 u5; then signup in order within 7 days: u1 u2; then purchase: u1.
    assert [s["count"] for s in steps] == [4, 2, 1]
    assert [s["conversion_rate"] for s in steps] == [1.0, 0.5, 0.25]
    # u1 signed up 300 s after viewing, u2 600 s: median 450; u1 bought 1800 s after viewing.
    assert steps[1]["median_seconds_to_convert"] == 450
    assert steps[2]["median_seconds_to_convert"] == 1800


def test_funnel_unknown_event_is_4xx_naming_it(client: Any, loaded: dict[str, str]) -> None:
    body = {
        "steps": [{"event": "page_view"}, {"event": "checkout_typo"}],
        "window_seconds": 60,
        **RANGE,
    }
    resp = client.post("/api/v1/analytics/funnel", json=body, headers=loaded)
    assert resp.status_code in (400, 422)
    assert "checkout_typo" in resp.text
    bad_field = {
        "steps": [{"event": "page_view", "where": {"no_such_column": 1}}, {"event": "signup"}],
        "window_seconds": 60,
        **RANGE,
    }
    resp2 = client.post("/api/v1/analytics/funnel", json=bad_field, headers=loaded)
    assert resp2.status_code in (400, 422) and "no_such_column" in resp2.text


def test_events_liebian_writes_are_known_before_the_first_one(
    client: Any, owner: dict[str, str]
) -> None:
    # A new workspace's console asks for today's clicks before anything was clicked: zeros,
    # not "unknown event"; a typo in a name the workspace sends itself is still refused.
    body = {"events": ["click"], "interval": "day", **RANGE}
    resp = client.post("/api/v1/analytics/counts", json=body, headers=owner)
    assert resp.status_code == 200, resp.text
    assert sum(row["count"] for row in resp.json()["rows"]) == 0
    funnel = {
        "steps": [{"event": "invite"}, {"event": "invite_qualified"}],
        "window_seconds": 86400,
        **RANGE,
    }
    resp = client.post("/api/v1/analytics/funnel", json=funnel, headers=owner)
    assert resp.status_code == 200, resp.text
    assert [s["count"] for s in resp.json()["steps"]] == [0, 0]
    typo = {"events": ["clikc"], "interval": "day", **RANGE}
    resp = client.post("/api/v1/analytics/counts", json=typo, headers=owner)
    assert resp.status_code == 422 and "clikc" in resp.text


def test_retention_purchase_cohort(client: Any, loaded: dict[str, str]) -> None:
    body = {
        "start_event": "purchase",
        "return_event": "purchase",
        "period": "day",
        "periods": 2,
        **RANGE,
    }
    resp = client.post("/api/v1/analytics/retention", json=body, headers=loaded)
    assert resp.status_code == 200, resp.text
    cohorts = resp.json()["cohorts"]
    # First purchases: u1 and u3 on 03-01; u1 bought again on 03-02, u3 never did.
    first = cohorts[0]
    assert first["start"].startswith("2026-03-01") and first["size"] == 2
    assert first["retained"][1:] == [1, 0]


def test_cac_uses_recorded_spend_pro_rata(client: Any, loaded: dict[str, str]) -> None:
    spent = client.post(
        "/api/v1/spend",
        json={
            "channel": "wx",
            "period_start": "2026-03-01",
            "period_end": "2026-03-03",
            "amount": 3000,
        },
        headers=loaded,
    )
    assert spent.status_code == 201
    body = {"from": "2026-03-01T00:00:00+08:00", "to": "2026-03-03T00:00:00+08:00"}
    rows = {
        r["channel"]: r
        for r in client.post("/api/v1/analytics/cac", json=body, headers=loaded).json()["rows"]
    }
    assert rows["wx"]["spend"] == 2000  # two of three days
    assert rows["wx"]["revenue"] == 1500  # u1's two purchases
    bad = client.post(
        "/api/v1/spend",
        json={
            "channel": "wx",
            "period_start": "2026-03-03",
            "period_end": "2026-03-01",
            "amount": 1,
        },
        headers=loaded,
    )
    assert bad.status_code == 422
    neg = client.post(
        "/api/v1/spend",
        json={
            "channel": "wx",
            "period_start": "2026-03-01",
            "period_end": "2026-03-01",
            "amount": -1,
        },
        headers=loaded,
    )
    assert neg.status_code == 422


def test_exports_csv_and_parquet(client: Any, loaded: dict[str, str], tmp_path: Any) -> None:
    body = {
        "steps": [{"event": "page_view"}, {"event": "signup"}],
        "window_seconds": 86400,
        **RANGE,
    }
    csv_resp = client.post("/api/v1/analytics/funnel?format=csv", json=body, headers=loaded)
    assert csv_resp.status_code == 200 and csv_resp.headers["content-type"].startswith("text/csv")
    assert "page_view" in csv_resp.text and "signup" in csv_resp.text
    pq = client.post("/api/v1/analytics/funnel?format=parquet", json=body, headers=loaded)
    assert pq.status_code == 200
    path = tmp_path / "f.parquet"
    path.write_bytes(pq.content)
    counts = duckdb.sql(f"SELECT count FROM read_parquet('{path}') ORDER BY count DESC").fetchall()
    assert [c[0] for c in counts][:2] == [4, 2]


def test_analytics_is_workspace_scoped_and_role_checked(
    client: Any, loaded: dict[str, str], runtime: Any
) -> None:
    ws, other_owner = make_key(runtime, "owner")
    body = {"steps": [{"event": "page_view"}, {"event": "signup"}], "window_seconds": 60, **RANGE}
    resp = client.post("/api/v1/analytics/funnel", json=body, headers=other_owner)
    assert resp.status_code in (400, 422)  # that workspace has no such events
    _, viewer = make_key(runtime, "viewer", ws)
    assert client.post("/api/v1/analytics/funnel", json=body, headers=viewer).status_code == 403


def test_exports_survive_a_pathsend_server_and_name_the_file(
    client: Any, loaded: dict[str, str]
) -> None:
    """granian advertises ASGI ``http.response.pathsend`` and opens a FileResponse's file only
    after the app returned; a delete-after background task raced it (404 "Cannot open file",
    ~1 export in 6). Drive the app as such a server does: whatever path the app hands over
    must still be readable after the app has finished, and the name is the report's, not a
    /tmp path."""
    import asyncio
    import json
    from pathlib import Path

    body = json.dumps(
        {"steps": [{"event": "page_view"}, {"event": "signup"}], "window_seconds": 86400, **RANGE}
    ).encode()
    for fmt in ("csv", "parquet"):
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any], sent: list[dict[str, Any]] = sent) -> None:
            sent.append(message)

        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
            "scheme": "http", "path": "/api/v1/analytics/funnel", "raw_path": b"/api/v1/analytics/funnel",
            "query_string": f"format={fmt}".encode(), "root_path": "", "client": ("127.0.0.1", 1),
            "server": ("sho.rt", 80), "extensions": {"http.response.pathsend": {}},
            "headers": [(b"host", b"sho.rt"), (b"content-type", b"application/json"),
                        (b"authorization", loaded["Authorization"].encode())],
        }  # fmt: skip
        asyncio.run(client.app(scope, receive, send))
        start = next(m for m in sent if m["type"] == "http.response.start")
        assert start["status"] == 200
        headers = {k.decode(): v.decode() for k, v in start["headers"]}
        assert headers["content-disposition"] == f'attachment; filename="funnel.{fmt}"'
        # What the server would send now, after the app returned.
        paths = [m["path"] for m in sent if m["type"] == "http.response.pathsend"]
        payload = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
        payload += b"".join(Path(p).read_bytes() for p in paths)  # raises if it was deleted
        assert payload.startswith(b"PAR1" if fmt == "parquet" else b"breakdown,event,count")
