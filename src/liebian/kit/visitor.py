"""The HTTP request turned into a value early, so services never see a Request."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

# The first-party visitor cookie the redirect and /t.js set (redirect/clicks.py).
VISITOR_COOKIE: Final = "lb_vid"
VISITOR_MAX_AGE: Final = 365 * 24 * 3600


def visitor_cookie(visitor_id: str, *, secure: bool) -> bytes:
    """The Set-Cookie value. Not HttpOnly: /t.js on the same host reads it to tie later
    events to this visitor."""
    flag = "; Secure" if secure else ""
    return (
        f"{VISITOR_COOKIE}={visitor_id}; Max-Age={VISITOR_MAX_AGE}; Path=/; SameSite=Lax{flag}"
    ).encode()


@dataclass(frozen=True, slots=True)
class Visitor:
    ip: str
    user_agent: str
    platform: str
    device: str
    os: str
    browser: str
    is_bot: bool
    visitor_id: str
    referrer: str = ""
    # True when the request carried no (valid) visitor cookie: ``visitor_id`` was made up
    # for it, and the answer should set the cookie.
    new_visitor: bool = False
