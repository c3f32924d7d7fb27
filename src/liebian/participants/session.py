"""Signed values the participant pages keep in cookies: the sign-in session and the WeChat
authorization state.

A value is ``v1.<fields, each urlsafe base64>.<expiry>.<HMAC-SHA256>``, keyed by the server
secret and a purpose (a session cookie cannot pass for a state cookie, or the reverse). Only
the server can make one; it expires by itself; nothing is stored.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import time
from typing import Final

SESSION_COOKIE: Final = "lb_ps"
SESSION_SECONDS: Final = 7 * 24 * 3600
STATE_COOKIE: Final = "lb_wxs"
STATE_SECONDS: Final = 600
MAX_VALUE: Final = 1200
METHODS: Final = ("token", "sms", "wechat")
# Where a sign-in may send a person back to: a path of the participant pages on this site.
_NEXT = re.compile(
    r"/(?:p|g|a)/[A-Za-z0-9_\-]{1,64}(?:/[A-Za-z0-9_\-./]{0,120})?(?:\?[A-Za-z0-9_\-=&%.]{0,200})?"
)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _key(secret: bytes, purpose: str) -> bytes:
    return hmac.new(secret, f"participant-{purpose}".encode(), hashlib.sha256).digest()


def sign(
    secret: bytes, purpose: str, fields: list[str], *, ttl: float, now: float | None = None
) -> str:
    expires = int((time.time() if now is None else now) + ttl)
    body = "v1." + ".".join(_b64(f.encode()) for f in fields) + f".{expires}"
    mac = hmac.new(_key(secret, purpose), body.encode(), hashlib.sha256).digest()
    return f"{body}.{_b64(mac)}"


def unsign(
    secret: bytes, purpose: str, value: str | None, count: int, *, now: float | None = None
) -> list[str] | None:
    """The fields of a value this server signed for ``purpose``, unexpired; None otherwise."""
    if not value or len(value) > MAX_VALUE:
        return None
    parts = value.split(".")
    if len(parts) != count + 3 or parts[0] != "v1" or not parts[-2].isdigit():
        return None
    body = value.rsplit(".", 1)[0]
    mac = _b64(hmac.new(_key(secret, purpose), body.encode(), hashlib.sha256).digest())
    if not hmac.compare_digest(mac, parts[-1]):
        return None
    if int(parts[-2]) <= (time.time() if now is None else now):
        return None
    try:
        return [_unb64(p).decode() for p in parts[1:-2]]
    except (binascii.Error, UnicodeDecodeError):
        return None


def session_value(
    secret: bytes, workspace_id: str, method: str, external_id: str, *, now: float | None = None
) -> str:
    return sign(
        secret, "session", [workspace_id, method, external_id], ttl=SESSION_SECONDS, now=now
    )


def session_identity(
    secret: bytes, value: str | None, workspace_id: str, *, now: float | None = None
) -> tuple[str, str] | None:
    """``(external_id, method)`` of a session cookie made for this workspace; None for no
    cookie, a forged or expired one, or one of another workspace (the same site may serve
    several brands: a person signed in at one is a visitor at the other)."""
    fields = unsign(secret, "session", value, 3, now=now)
    if fields is None or fields[0] != workspace_id or fields[1] not in METHODS:
        return None
    return fields[2], fields[1]


def form_token(secret: bytes, visitor_id: str) -> str:
    """The hidden field of the sign-in forms: tied to the device cookie (HttpOnly, SameSite=
    Lax), which a form posted from another site does not carry, so such a post is refused
    (no signing a person in to somebody else's account from a foreign page)."""
    return _b64(hmac.new(_key(secret, "form"), visitor_id.encode(), hashlib.sha256).digest()[:16])


def form_token_ok(secret: bytes, visitor_id: str | None, token: str | None) -> bool:
    return bool(visitor_id and token) and hmac.compare_digest(
        form_token(secret, visitor_id or ""), token or ""
    )


def safe_next(value: str | None, default: str) -> str:
    """A return address only if it is a participant page path on this site (no scheme, no
    host, no ``//``, no backslash): anything else is the default. No open redirect."""
    if value and _NEXT.fullmatch(value) and "//" not in value and ".." not in value:
        return value
    return default
