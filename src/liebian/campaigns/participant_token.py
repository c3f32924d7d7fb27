"""Who is acting on a participant page: a token the brand signed for one of its users.

Format and signing are in ``liebian.client`` (the brand's side); here the workspace's key and
the check. The key is derived from the server secret and the workspace id (HMAC), so nothing
new is stored; rotating it means rotating ``LIEBIAN_SECRET_KEY`` (a stored, rotatable key per
workspace is future work).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time

from liebian.client import PARTICIPANT_TOKEN_VERSION, participant_token_signature
from liebian.kit.errors import Unauthorized

MAX_TOKEN = 400


def workspace_key(secret: bytes, workspace_id: str) -> str:
    raw = hmac.new(secret, f"participant-token:{workspace_id}".encode(), hashlib.sha256).digest()
    return "ptk_" + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def verify(key: str, token: str, *, now: float | None = None) -> str:
    """The external id the token was signed for; ``Unauthorized`` (code ``token_invalid`` or
    ``token_expired``) otherwise."""
    parts = token.split(".") if 0 < len(token) <= MAX_TOKEN else []
    if len(parts) != 4 or parts[0] != PARTICIPANT_TOKEN_VERSION or not parts[2].isdigit():
        raise Unauthorized("participant token is malformed", code="token_invalid")
    _version, eid_b64, expires_text, signature = parts
    expected = participant_token_signature(key, eid_b64, int(expires_text))
    if not hmac.compare_digest(expected, signature):
        raise Unauthorized("participant token signature does not match", code="token_invalid")
    if int(expires_text) <= (time.time() if now is None else now):
        raise Unauthorized("participant token has expired", code="token_expired")
    try:
        external_id = base64.urlsafe_b64decode(eid_b64 + "=" * (-len(eid_b64) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise Unauthorized("participant token is malformed", code="token_invalid") from exc
    if not 1 <= len(external_id) <= 128:
        raise Unauthorized("participant token is malformed", code="token_invalid")
    return external_id
