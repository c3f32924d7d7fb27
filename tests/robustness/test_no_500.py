"""Inputs that once answered 500 (issue 9, item 2): each now gets a 4xx naming what to fix."""

from __future__ import annotations

from typing import Any

import pytest

RANGE = {"from": "2026-03-01T00:00:00+08:00", "to": "2026-03-11T00:00:00+08:00"}


def _error(resp: Any, status: int) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["error"]["code"] and body["error"]["message"], body
    error: dict[str, Any] = body["error"]
    return error


def test_live_code_image_with_non_ascii_signature_is_401(client: Any) -> None:
    # A signature that cannot match is no key: the caller is told to authenticate.
    resp = client.get("/api/v1/live-codes/x/targets/y/image?sig=%C3%A9")
    _error(resp, 401)


@pytest.mark.parametrize(
    "csv_text",
    [
        "url,title\nhttps://a.cn,bad\rcell\n",  # a bare CR inside an unquoted field
        "url,title\nhttps://a.cn," + "x" * 131_073 + "\n",  # a field over csv's limit
    ],
    ids=["bare-cr", "huge-field"],
)
def test_malformed_csv_import_is_422(client: Any, owner: dict[str, str], csv_text: str) -> None:
    resp = client.post(
        "/api/v1/links/bulk/csv",
        content=csv_text.encode(),
        headers={**owner, "content-type": "text/csv"},
    )
    error = _error(resp, 422)
    assert error["code"] == "bad_csv"
    assert client.get("/api/v1/links", headers=owner).json()["items"] == []


@pytest.mark.parametrize(
    "properties",
    [{"big": 10**23}, {"deep": "NEST"}],
    ids=["int-beyond-64-bit", "nested-300-deep"],
)
def test_event_with_unstorable_properties_is_rejected(
    client: Any, owner: dict[str, str], properties: dict[str, Any]
) -> None:
    if properties.get("deep") == "NEST":
        raw = '{"event":"x","properties":{"deep":' + "[" * 300 + "]" * 300 + "}}"
    else:
        raw = '{"event":"x","properties":{"big":' + str(10**23) + "}}"
    headers = {**owner, "content-type": "application/json"}
    single = client.post("/api/v1/events", content=raw, headers=headers)
    # Alone as in a batch (decision 0050: a number beyond 64 bits is never stored as a float).
    assert "properties" in _error(single, 422)["message"]
    # Inside a batch only that item is refused; the others are stored.
    batch = "[" + raw + ',{"event":"ok"}]'
    resp = client.post("/api/v1/events", content=batch, headers=headers)
    assert resp.status_code == 202, resp.text
    assert resp.json()["accepted"] == 1
    assert [r["index"] for r in resp.json()["rejected"]] == [0]


def test_collect_with_deeply_nested_body_is_4xx(client: Any) -> None:
    resp = client.post("/collect", content=b"[" * 5000 + b"]" * 5000)
    _error(resp, 422)


@pytest.mark.parametrize("value", ["abc", "NaN", {"gt": "abc"}, {"in": ["x", "1e999"]}])
def test_analytics_filter_on_revenue_with_a_non_number_is_422(
    client: Any, owner: dict[str, str], value: Any
) -> None:
    body = {**RANGE, "where": {"revenue": value}}
    error = _error(client.post("/api/v1/analytics/counts", json=body, headers=owner), 422)
    assert "revenue" in error["message"]


def test_analytics_filter_with_nan_number_is_422(client: Any, owner: dict[str, str]) -> None:
    raw = '{"from":"2026-03-01T00:00:00Z","to":"2026-03-02T00:00:00Z","where":{"revenue":NaN}}'
    resp = client.post(
        "/api/v1/analytics/counts",
        content=raw,
        headers={**owner, "content-type": "application/json"},
    )
    assert resp.status_code == 422, resp.text


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("counts", {**RANGE, "events": ["e"] * 1_001}, "events"),
        ("counts", {"from": "0001-01-01T00:00:00Z", "to": "9999-12-31T00:00:00Z"}, "to"),
        (
            "counts",
            {"from": "2020-01-01T00:00:00Z", "to": "2026-01-01T00:00:00Z", "interval": "hour"},
            "interval",
        ),
        ("new-vs-returning", {"from": "1970-01-01T00:00:00Z", "to": "2999-01-01T00:00:00Z"}, "to"),
        ("metrics", {"from": "1900-01-01T00:00:00Z", "to": "2900-01-01T00:00:00Z"}, "to"),
        ("cac", {"from": "1900-01-01T00:00:00Z", "to": "2900-01-01T00:00:00Z"}, "to"),
        ("counts", {**RANGE, "where": {f"properties.k{i}": 1 for i in range(60)}}, "where"),
        ("counts", {**RANGE, "where": {"channel": {"in": ["x"] * 1_001}}}, "where"),
        ("counts", {**RANGE, "tz": "Mars/Olympus"}, "tz"),
    ],
    ids=[
        "events-list", "span-years", "too-many-hour-buckets", "nvr-span", "metrics-span",
        "cac-span", "where-keys", "in-list", "unknown-tz",
    ],
)  # fmt: skip
def test_analytics_input_is_bounded(
    client: Any, owner: dict[str, str], path: str, body: dict[str, Any], field: str
) -> None:
    resp = client.post(f"/api/v1/analytics/{path}", json=body, headers=owner)
    error = _error(resp, 422)
    assert field in str(error), error


def test_analytics_events_list_is_bounded(client: Any, owner: dict[str, str]) -> None:
    body = {**RANGE, "events": [f"e{i}" for i in range(1_001)]}
    error = _error(client.post("/api/v1/analytics/counts", json=body, headers=owner), 422)
    assert "events" in str(error) and "at most" in str(error), error


@pytest.mark.parametrize("backend", ["duckdb", "chdb"])
def test_a_query_past_its_time_limit_is_cancelled_in_the_engine(
    tmp_path: Any, backend: str
) -> None:
    import uuid

    from liebian.events.store import open_event_store
    from liebian.events.store.base import QueryTimeout

    target = (
        str(tmp_path / "events.duckdb")
        if backend == "duckdb"
        else f"chdb://:memory:?database=t_{uuid.uuid4().hex[:12]}"
    )
    store = open_event_store(target, query_timeout=0.3)
    # Hours of work for either engine: only the time limit can end it.
    sql = (
        "SELECT count(*) FROM range(100000000000) t(n) WHERE n % 7 = $m"
        if backend == "duckdb"
        else "SELECT count() FROM numbers(100000000000) WHERE number % 7 = {m:UInt64}"
    )
    try:
        with pytest.raises(QueryTimeout) as caught:
            store.query(sql, {"m": 1})
        assert caught.value.status == 503 and caught.value.code == "query_timeout"
        # The store still answers afterwards.
        assert store.count("ws_none") == 0
    finally:
        store.close()


def test_a_real_fault_is_a_logged_500_with_a_request_id(
    client: Any, owner: dict[str, str], runtime: Any, caplog: pytest.LogCaptureFixture
) -> None:
    if runtime.engine.dialect.name != "sqlite":
        pytest.skip("the fault is made in this test's own SQLite file")
    from sqlalchemy import text

    # A real fault: the links table is gone from under the process.
    with runtime.engine.begin() as conn:
        conn.execute(text("ALTER TABLE links RENAME TO links_gone"))
    from fastapi.testclient import TestClient

    # The same app, already started by ``client``; this one only turns a server exception
    # into the response a real client would get (no second lifespan).
    plain = TestClient(client.app, base_url="http://sho.rt", raise_server_exceptions=False)
    resp = plain.get("/api/v1/links", headers=owner)
    assert resp.status_code == 500, resp.text
    request_id = resp.json()["error"]["details"]["request_id"]
    assert resp.headers["x-request-id"] == request_id
    assert any(request_id in r.getMessage() and r.exc_info for r in caplog.records)
