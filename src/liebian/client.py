"""A small server-side helper for brands' Python back ends: send events and identify users.

    from liebian.client import LiebianClient
    lb = LiebianClient("https://growth.example.cn", api_key="lb_…")
    lb.identify(visitor_id=request.cookies["lb_vid"], user_id=user.id)   # on sign-up
    lb.track("purchase", user_id=user.id, event_id=order.id, revenue=order.total_fen)
    lb.flush()   # or use it as a context manager

Events are buffered and sent in batches of up to 500; ``event_id`` makes retries safe.

Participant pages (/p /g /a) act for a person the brand has signed in: give them a link with
a signed participant token (the key comes once from ``GET /api/v1/participant-token-key``):

    from liebian.client import participant_token
    t = participant_token(key, user.id, ttl_seconds=3600)
    url = f"https://growth.example.cn/p/{campaign_id}?ch=app&t={t}"
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import httpx

PARTICIPANT_TOKEN_VERSION = "v1"


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def participant_token_signature(key: str, external_id_b64: str, expires: int) -> str:
    """HMAC-SHA256 over ``v1.<base64url(external_id)>.<expiry unix seconds>`` with the
    workspace's participant-token key (its text, as the API returned it)."""
    message = f"{PARTICIPANT_TOKEN_VERSION}.{external_id_b64}.{expires}".encode()
    return _b64(hmac.new(key.encode(), message, hashlib.sha256).digest())


def participant_token(
    key: str, external_id: str, *, ttl_seconds: int = 3600, now: float | None = None
) -> str:
    """A token that lets the participant pages act for ``external_id`` until it expires:
    ``v1.<base64url(external_id)>.<expiry>.<signature>``. Sign on your server, never in a
    page: whoever holds the key can act for any of your users."""
    if not external_id or len(external_id) > 128:
        raise ValueError("external_id must be 1–128 characters")
    expires = int((time.time() if now is None else now) + ttl_seconds)
    eid = _b64(external_id.encode())
    return f"{PARTICIPANT_TOKEN_VERSION}.{eid}.{expires}.{participant_token_signature(key, eid, expires)}"


class LiebianError(RuntimeError):
    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"liebian answered {status}: {body}")
        self.status = status
        self.body = body


class LiebianClient:
    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        batch_size: int = 500,
        timeout: float = 10.0,
        http: httpx.Client | None = None,
    ) -> None:
        self._http = http or httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout)
        self._headers = {"Authorization": f"Bearer {api_key}"}
        self._buffer: list[dict[str, Any]] = []
        self.batch_size = batch_size
        self.rejected: list[dict[str, Any]] = []

    def track(
        self,
        event: str,
        *,
        user_id: str | None = None,
        visitor_id: str | None = None,
        event_id: str | None = None,
        click_id: str | None = None,
        ts: datetime | None = None,
        revenue: int | None = None,
        currency: str | None = None,
        properties: dict[str, Any] | None = None,
        **extra: Any,
    ) -> None:
        item: dict[str, Any] = {"event": event, "ts": (ts or datetime.now(UTC)).isoformat()}
        for key, value in (
            ("user_id", user_id), ("visitor_id", visitor_id), ("event_id", event_id),
            ("click_id", click_id), ("revenue", revenue), ("currency", currency),
            ("properties", properties),
        ):  # fmt: skip
            if value is not None:
                item[key] = value
        item.update(extra)
        self._buffer.append(item)
        if len(self._buffer) >= self.batch_size:
            self.flush()

    def flush(self) -> int:
        """Send what is buffered; returns how many events were accepted. Bad events are kept
        in ``rejected`` with the server's reasons; transport errors raise and keep the buffer."""
        if not self._buffer:
            return 0
        batch = self._buffer
        resp = self._http.post("/api/v1/events", json=batch, headers=self._headers)
        if resp.status_code not in (200, 202):
            raise LiebianError(resp.status_code, resp.json() if resp.content else None)
        self._buffer = []
        body = resp.json()
        for item in body.get("rejected", []):
            self.rejected.append({"event": batch[item["index"]], "errors": item["errors"]})
        return int(body["accepted"])

    def identify(self, *, visitor_id: str, user_id: str) -> None:
        resp = self._http.post(
            "/api/v1/identify",
            json={"visitor_id": visitor_id, "user_id": user_id},
            headers=self._headers,
        )
        if resp.status_code != 204:
            raise LiebianError(resp.status_code, resp.json() if resp.content else None)

    def close(self) -> None:
        self.flush()

    def __enter__(self) -> LiebianClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.flush()
