"""The redirect rules, in the order they apply. The first rule that answers wins.

1. **unknown slug** → 404 page.
2. **live code** → handed to the live-code server (it picks the target itself).
3. **expired** (``expires_at`` passed) → 302 to ``expired_url``, else the 410 page.
4. **spent** (``max_clicks`` human clicks already redirected) → same as expired.
5. **platform not allowed** (``allowed_platforms`` set and the visitor's platform, bots
   included, not in it) → the "please open in …" page (403).
6. **browser guide** (``browser_guide`` set and the visitor is inside WeChat, WeCom or QQ) →
   the "点击右上角 ··· 选择在浏览器打开" page (200).
7. **password** (set, and no valid unlock cookie) → the password page; a POST with the right
   password sets a signed unlock cookie for this link and redirects back (303) to step 1.
8. **destination**: A/B ``variants`` (weighted, sticky per visitor id) → ``ios_url`` for iOS,
   ``android_url`` for Android → ``url``. UTM fields and ``lb_cid`` are added, the
   destination's own query and fragment kept.

Why this order: answers that end the visit whoever asks come first (a dead link needs no
password); platform and guide pages come before the password, because a password typed inside
WeChat's webview would not unlock the browser the guide sends the visitor to. Only step 8
records a click and consumes ``max_clicks``, and only for humans: bots and ``HEAD`` requests
are recorded flagged as bots and never spend a limited link.

Everything here is pure (no I/O, no clock of its own) so the order has tests of its own.
"""

from __future__ import annotations

import enum
import hashlib
import hmac

from liebian.links.platforms import needs_open_in_browser_guide
from liebian.redirect.cache import Dest, Entry


class Outcome(enum.IntEnum):
    EXPIRED = 1
    NOT_ALLOWED = 2
    GUIDE = 3
    PASSWORD = 4


def gate(entry: Entry, *, now: float, spent: bool, platform: str, unlocked: bool) -> Outcome | None:
    """Rules 3–7: an outcome that replaces the redirect, or ``None`` to go on to rule 8."""
    if entry.expires_at is not None and now >= entry.expires_at:
        return Outcome.EXPIRED
    if spent:
        return Outcome.EXPIRED
    if entry.allowed is not None and platform not in entry.allowed:
        return Outcome.NOT_ALLOWED
    if entry.guide and needs_open_in_browser_guide(platform):
        return Outcome.GUIDE
    if entry.password_hash is not None and not unlocked:
        return Outcome.PASSWORD
    return None


def variant_bucket(link_id: str, visitor_id: str, total_weight: int) -> int:
    """A stable number in [0, total_weight) for this visitor and link.

    Keyed by the link too, so one visitor's arm in one test says nothing about another test.
    """
    digest = hashlib.blake2b(f"{link_id}:{visitor_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % total_weight


def choose(entry: Entry, *, visitor_id: str, os: str, android_compatible: bool) -> Dest:
    """Rule 8: the destination for this visitor."""
    variants = entry.variants
    if variants is not None:
        bucket = variant_bucket(entry.id, visitor_id, entry.total_weight)
        for upper, dest in variants:
            if bucket < upper:
                return dest
    if entry.ios is not None and os == "ios":
        return entry.ios
    # Older HarmonyOS releases run Android apps and say "Android" in their UA; HarmonyOS NEXT
    # does not, and gets the default destination.
    if entry.android is not None and (os == "android" or android_compatible):
        return entry.android
    return entry.dest


# -- password unlock cookie ---------------------------------------------------------------

UNLOCK_SECONDS = 24 * 3600


def unlock_cookie_name(slug: str) -> str:
    # Slugs are [A-Za-z0-9_-], all valid cookie-name characters.
    return f"lb_unlock_{slug}"


def _unlock_mac(secret: bytes, entry: Entry, expires: int) -> str:
    # The password hash is part of the message: changing the password locks every visitor
    # out again without any server-side state.
    message = f"unlock|{entry.id}|{entry.password_hash}|{expires}".encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()[:32]


def unlock_token(secret: bytes, entry: Entry, now: float) -> str:
    expires = int(now) + UNLOCK_SECONDS
    return f"{expires}.{_unlock_mac(secret, entry, expires)}"


def check_unlock(secret: bytes, entry: Entry, token: str | None, now: float) -> bool:
    if not token or entry.password_hash is None:
        return False
    expires_text, _, mac = token.partition(".")
    if not expires_text.isdigit():
        return False
    expires = int(expires_text)
    if expires < now:
        return False
    return hmac.compare_digest(mac, _unlock_mac(secret, entry, expires))
