"""/healthz, /readyz and /metrics (issue 9, item 13)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from liebian.app.factory import create_app
from liebian.app.runtime import Runtime
from liebian.kit.settings import Settings

TOKEN = "metrics-token-for-tests"
IPHONE = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15"


def _client(settings: Settings, runtime: Runtime, **kwargs: Any) -> TestClient:
    return TestClient(
        create_app(settings, runtime), base_url="http://sho.rt", follow_redirects=False, **kwargs
    )


@pytest.fixture
def local(settings: Settings, runtime: Runtime) -> Iterator[TestClient]:
    """A client on the loopback interface (no proxy header): sees the details."""
    with _client(settings, runtime, client=("127.0.0.1", 50000)) as tc:
        yield tc


def test_readyz_is_ready_and_shows_the_figures_to_the_loopback(local: TestClient) -> None:
    assert local.get("/healthz").json() == {"status": "ok"}
    resp = local.get("/readyz")
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["status"] == "ready" and body["reasons"] == []
    figures = body["figures"]
    assert figures["database_up"] is True
    assert figures["spool_segments"] == 0 and figures["spool_quarantined_segments"] == 0
    assert figures["flush_last_error"] is None
    assert set(figures["job_lag_seconds"]) >= set()


def _from(local: TestClient, host: str) -> TestClient:
    """Another client of the same app (its components already started by ``local``)."""
    return TestClient(local.app, base_url="http://sho.rt", client=(host, 40000))


def test_readyz_from_elsewhere_says_only_the_verdict(local: TestClient) -> None:
    body = _from(local, "203.0.113.9").get("/readyz").json()
    assert body == {"status": "ready", "reasons": [], "warnings": [], "figures": {}}
    # Proxied from the internet through a local reverse proxy: no details either.
    via_proxy = local.get("/readyz", headers={"x-forwarded-for": "203.0.113.9"}).json()
    assert via_proxy["figures"] == {}


def test_readyz_is_503_with_the_reason_when_the_database_is_gone(tmp_path: Path) -> None:
    not_a_database = tmp_path / "a-directory"  # SQLite cannot open a directory
    not_a_database.mkdir()
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=f"sqlite:///{not_a_database}",
        secret_key="11" * 32,
        jobs_interval=0,
        webhook_interval=0,
    )
    runtime = Runtime.build(settings)
    try:
        with _client(settings, runtime, client=("127.0.0.1", 50000)) as tc:
            resp = tc.get("/readyz")
            assert resp.status_code == 503
            assert resp.headers["retry-after"]
            codes = [r["code"] for r in resp.json()["reasons"]]
            assert codes == ["database_unreachable"]
            assert resp.json()["figures"]["database_up"] is False
            metrics = tc.get("/metrics").text
            assert "liebian_ready 0.0" in metrics and "liebian_database_up 0.0" in metrics
    finally:
        runtime.close()


def test_a_quarantined_segment_is_a_warning_and_a_metric(
    local: TestClient, runtime: Runtime
) -> None:
    assert runtime.spool is not None
    good = json.dumps(
        {"workspace_id": "ws1", "event_id": "e1", "event": "x", "ts": "2024-03-01 00:00:00"}
    )
    runtime.spool.append_line(b'{"workspace_id":"ws1","ev\n' + good.encode() + b"\n")
    runtime.flush_events()
    body = local.get("/readyz").json()
    assert body["status"] == "ready"
    assert [w["code"] for w in body["warnings"]] == ["spool_quarantined"]
    assert body["figures"]["spool_quarantined_segments"] == 1
    metrics = local.get("/metrics").text
    assert "liebian_spool_quarantined_segments 1.0" in metrics
    assert "liebian_spool_quarantined_total 1.0" in metrics


def test_metrics_count_requests_by_route_class_and_status(
    local: TestClient, owner: dict[str, str]
) -> None:
    link = local.post("/api/v1/links", json={"url": "https://example.com/m"}, headers=owner)
    assert link.status_code == 201, link.text
    for _ in range(3):
        assert (
            local.get("/" + link.json()["slug"], headers={"user-agent": IPHONE}).status_code == 302
        )
    assert local.get("/no-such-slug").status_code == 404
    text = local.get("/metrics").text
    assert 'liebian_http_request_duration_seconds_count{route="redirect",status="302"} 3.0' in text
    assert 'liebian_http_request_duration_seconds_count{route="redirect",status="404"} 1.0' in text
    assert 'liebian_http_request_duration_seconds_count{route="api",status="201"} 1.0' in text
    assert (
        'liebian_http_request_duration_seconds_bucket{le="+Inf",route="redirect",status="302"} 3.0'
        in text
    )
    assert "liebian_spool_oldest_seconds" in text and "liebian_flush_failures_total" in text


def test_metrics_are_closed_to_the_internet_and_open_to_the_token(
    local: TestClient, runtime: Runtime
) -> None:
    remote = _from(local, "203.0.113.9")
    denied = remote.get("/metrics")
    assert denied.status_code == 403
    assert denied.json()["error"]["code"] == "forbidden"
    assert local.get("/metrics", headers={"x-forwarded-for": "203.0.113.9"}).status_code == 403
    runtime.settings = runtime.settings.model_copy(update={"metrics_token": TOKEN})
    assert remote.get("/metrics").status_code == 403
    resp = remote.get("/metrics", headers={"authorization": f"Bearer {TOKEN}"})
    assert resp.status_code == 200 and "liebian_ready 1.0" in resp.text
    # With a token set, the loopback needs it too (a local proxy could be in front).
    assert local.get("/metrics").status_code == 403
