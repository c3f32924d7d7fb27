"""Webhooks end to end: outbox rows in the publisher's transaction, signed POSTs to a real
receiver on 127.0.0.1, retries with backoff, dead letters, the delivery log, validation."""

from __future__ import annotations

import hashlib
import hmac
import json
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1] / "campaigns"))

from fission_helpers import GROUP_BUY, create, workspace_id
from receiver import receiver

from liebian.kit.bus import publish_after_commit
from liebian.kit.clock import utcnow
from liebian.kit.db import session_scope
from liebian.kit.errors import Invalid
from liebian.kit.settings import Settings
from liebian.webhooks.deliver import DeliveryPolicy, deliver_due
from liebian.webhooks.models import WebhookEvent
from liebian.webhooks.urls import check_url
from testkit import make_key

NOW_POLICY = DeliveryPolicy(max_attempts=3, backoff_seconds=0, allow_private=True)


def _register(client: Any, owner: dict[str, str], url: str, topics: list[str]) -> dict[str, Any]:
    resp = client.post("/api/v1/webhooks", json={"url": url, "topics": topics}, headers=owner)
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


def _verify(secret: str, headers: dict[str, str], body: bytes) -> bool:
    fields = dict(p.split("=", 1) for p in headers["Liebian-Signature"].split(","))
    expected = hmac.new(
        secret.encode(), fields["t"].encode() + b"." + body, hashlib.sha256
    ).hexdigest()
    return hmac.compare_digest(expected, fields["v1"])


def _open_expired_group(runtime: Any, client: Any, owner: dict[str, str]) -> str:
    from liebian.campaigns import groups

    cid = create(client, owner, "group_buy", GROUP_BUY)
    ws = workspace_id(client, owner)
    with session_scope(runtime.sessions) as session:
        group = groups.open_group(
            session, runtime.cipher, ws, cid, "leader", now=utcnow() - timedelta(hours=25)
        )
    return group.id


class TestScheduledExpiry:
    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        # The server's own scheduler, ticking fast: nothing below calls a job by hand.
        return settings.model_copy(update={"jobs_interval": 0.05, "webhook_interval": 0.05})

    def test_expired_group_fails_and_a_signed_post_arrives(
        self, client: Any, owner: dict[str, str], runtime: Any
    ) -> None:
        with receiver() as rx:
            hook = _register(client, owner, rx.url, ["group.failed", "order.voided"])
            assert hook["secret"].startswith("whsec_")
            gid = _open_expired_group(runtime, client, owner)
            assert rx.wait_for(lambda reqs: len(reqs) >= 2), "no webhook arrived"
            view = client.get(f"/api/v1/groups/{gid}", headers=owner).json()
            assert view["status"] == "failed"
            assert {m["order_status"] for m in view["members"]} == {"voided"}
            by_type = {json.loads(r.body)["type"]: r for r in rx.requests}
            assert set(by_type) == {"group.failed", "order.voided"}
            for request in rx.requests:
                assert _verify(hook["secret"], request.headers, request.body)
                assert not _verify("whsec_wrong", request.headers, request.body)
            failed = json.loads(by_type["group.failed"].body)
            assert failed["data"]["group_id"] == gid
            assert failed["data"]["orders"][0]["external_id"] == "leader"
            assert by_type["group.failed"].headers["Liebian-Event"] == "group.failed"
            log = client.get(f"/api/v1/webhooks/{hook['id']}/deliveries", headers=owner)
            assert log.status_code == 200
            items = log.json()["items"]
            assert len(items) == 2
            # The POST lands before its delivery row is marked; wait for the log to catch up.
            assert rx.wait_for(lambda _: _all_delivered(client, owner, hook["id"]))


def _all_delivered(client: Any, owner: dict[str, str], hook_id: str) -> bool:
    items = client.get(f"/api/v1/webhooks/{hook_id}/deliveries", headers=owner).json()["items"]
    return bool(items) and all(
        i["status"] == "delivered" and i["log"][-1]["status_code"] == 200 for i in items
    )


def test_receiver_answering_500_is_retried(
    client: Any, owner: dict[str, str], runtime: Any
) -> None:
    with receiver([500, 200]) as rx, httpx.Client() as http:
        hook = _register(client, owner, rx.url, ["*"])
        assert client.post(f"/api/v1/webhooks/{hook['id']}/test", headers=owner).status_code == 202
        first = deliver_due(runtime.sessions, runtime.cipher, NOW_POLICY, client=http)
        assert (first.delivered, first.failed) == (0, 1)
        second = deliver_due(runtime.sessions, runtime.cipher, NOW_POLICY, client=http)
        assert (second.delivered, second.failed) == (1, 0)
        assert len(rx.requests) == 2
        # Same event, same body, re-signed: the receiver can dedupe on the event id.
        assert rx.requests[0].body == rx.requests[1].body
        assert (
            rx.requests[0].headers["Liebian-Event-Id"] == rx.requests[1].headers["Liebian-Event-Id"]
        )
    item = client.get(f"/api/v1/webhooks/{hook['id']}/deliveries", headers=owner).json()["items"][0]
    assert item["status"] == "delivered" and item["attempts"] == 2
    assert [a["status_code"] for a in item["log"]] == [500, 200]


def test_backoff_waits_and_gives_up_after_max_attempts(
    client: Any, owner: dict[str, str], runtime: Any
) -> None:
    policy = DeliveryPolicy(max_attempts=3, backoff_seconds=60, allow_private=True)
    with receiver([503]) as rx, httpx.Client() as http:
        hook = _register(client, owner, rx.url, ["webhook.test"])
        client.post(f"/api/v1/webhooks/{hook['id']}/test", headers=owner)
        now = utcnow()
        assert (
            deliver_due(runtime.sessions, runtime.cipher, policy, client=http, now=now).failed == 1
        )
        # Not due again before the backoff (60 s, then 120 s) has passed.
        assert (
            deliver_due(runtime.sessions, runtime.cipher, policy, client=http, now=now).failed == 0
        )
        later = now + timedelta(minutes=2)
        assert (
            deliver_due(runtime.sessions, runtime.cipher, policy, client=http, now=later).failed
            == 1
        )
        latest = later + timedelta(minutes=10)
        assert (
            deliver_due(runtime.sessions, runtime.cipher, policy, client=http, now=latest).dead == 1
        )
        assert len(rx.requests) == 3
    dead = client.get(
        f"/api/v1/webhooks/{hook['id']}/deliveries", params={"status": "dead"}, headers=owner
    ).json()["items"]
    assert len(dead) == 1 and dead[0]["last_status_code"] == 503
    retried = client.post(
        f"/api/v1/webhooks/{hook['id']}/deliveries/{dead[0]['id']}/retry", headers=owner
    )
    assert retried.status_code == 200 and retried.json()["status"] == "pending"


def test_endpoint_crud_validation_and_roles(
    client: Any, owner: dict[str, str], runtime: Any
) -> None:
    bad = [
        ({"url": "ftp://x.example.com/h", "topics": ["*"]}, "invalid_webhook_url"),
        ({"url": "https://user:pw@x.example.com/h", "topics": ["*"]}, "invalid_webhook_url"),
        ({"url": "https:///nohost", "topics": ["*"]}, "invalid_webhook_url"),
        ({"url": "https://x.example.com/h", "topics": ["group.exploded"]}, "invalid_topics"),
    ]
    for body, code in bad:
        resp = client.post("/api/v1/webhooks", json=body, headers=owner)
        assert resp.status_code == 422, resp.text
        assert resp.json()["error"]["code"] == code
    assert (
        client.post(
            "/api/v1/webhooks", json={"url": "https://x.example.com/h", "topics": []}, headers=owner
        ).status_code
        == 422
    )
    hook = _register(client, owner, "https://x.example.com/h", ["reward.issued"])
    got = client.get(f"/api/v1/webhooks/{hook['id']}", headers=owner).json()
    assert "secret" not in got and got["secret_hint"].startswith("whsec_")
    patched = client.patch(
        f"/api/v1/webhooks/{hook['id']}", json={"active": False, "topics": ["*"]}, headers=owner
    )
    assert patched.status_code == 200 and patched.json()["active"] is False
    rotated = client.post(f"/api/v1/webhooks/{hook['id']}/rotate-secret", headers=owner).json()
    assert rotated["secret"] != hook["secret"]
    _ws, viewer = make_key(runtime, "viewer", workspace_id(client, owner))
    assert (
        client.post(
            "/api/v1/webhooks",
            json={"url": "https://x.example.com/h", "topics": ["*"]},
            headers=viewer,
        ).status_code
        == 403
    )
    _other, stranger = make_key(runtime, "owner")
    assert client.get(f"/api/v1/webhooks/{hook['id']}", headers=stranger).status_code == 404
    assert client.delete(f"/api/v1/webhooks/{hook['id']}", headers=owner).status_code == 204
    assert client.get("/api/v1/webhooks", headers=owner).json()["items"] == []
    topics = client.get("/api/v1/webhooks/topics", headers=owner).json()
    assert "group.failed" in {t["topic"] for t in topics["items"]}


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1/h", "http://10.1.2.3/h", "http://localhost:8000/h", "http://[::1]/h",
     "http://169.254.169.254/latest", "http://printer.local/h"],
)  # fmt: skip
def test_private_targets_refused_unless_allowed(url: str) -> None:
    with pytest.raises(Invalid) as err:
        check_url(url, allow_private=False)
    assert err.value.code == "private_webhook_url"
    assert check_url(url, allow_private=True) == url


def test_outbox_rows_only_commit_with_the_change(
    client: Any, owner: dict[str, str], runtime: Any
) -> None:
    ws = workspace_id(client, owner)
    payload = {"workspace_id": ws, "live_code_id": "lc_x", "usable": 0, "threshold": 1}

    def events() -> int:
        with runtime.sessions() as session:
            return int(session.scalar(select(func.count()).select_from(WebhookEvent)) or 0)

    with session_scope(runtime.sessions) as session:  # nobody subscribed: nothing written
        publish_after_commit(session, "live_code.low_targets", payload)
    assert events() == 0
    _register(client, owner, "https://x.example.com/h", ["live_code.low_targets"])
    with pytest.raises(RuntimeError), session_scope(runtime.sessions) as session:
        publish_after_commit(session, "live_code.low_targets", payload)
        raise RuntimeError("the change fails after publishing")
    assert events() == 0  # rolled back with the change
    with session_scope(runtime.sessions) as session:
        publish_after_commit(session, "live_code.low_targets", payload)
        publish_after_commit(session, "slug.changed", "abc")  # not a webhook topic
    assert events() == 1
