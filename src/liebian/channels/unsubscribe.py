"""Signed unsubscribe links: ``/h5/unsubscribe/<token>`` names (workspace, contact, channel)
and carries an HMAC of them under the process secret, so nobody can opt out someone else."""

from __future__ import annotations

import base64
import hashlib
import hmac


def _mac(secret: bytes, payload: bytes) -> bytes:
    return hmac.new(hashlib.sha256(b"liebian-unsubscribe-v1" + secret).digest(), payload,
                    hashlib.sha256).digest()[:16]  # fmt: skip


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def make_token(secret: bytes, workspace_id: str, contact_id: str, channel_id: str) -> str:
    payload = f"{workspace_id}|{contact_id}|{channel_id}".encode()
    return f"{_b64(payload)}.{_b64(_mac(secret, payload))}"


def read_token(secret: bytes, token: str) -> tuple[str, str, str] | None:
    """(workspace_id, contact_id, channel_id), or None for a token we did not sign."""
    try:
        head, _, tail = token.partition(".")
        payload = base64.urlsafe_b64decode(head + "=" * (-len(head) % 4))
        mac = base64.urlsafe_b64decode(tail + "=" * (-len(tail) % 4))
    except (ValueError, TypeError):
        return None
    if not hmac.compare_digest(mac, _mac(secret, payload)):
        return None
    parts = payload.decode(errors="replace").split("|")
    if len(parts) != 3:
        return None
    return parts[0], parts[1], parts[2]
