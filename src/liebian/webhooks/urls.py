"""Webhook targets: http(s) only, no credentials, and no private or loopback hosts (SSRF)
unless the operator allowed them (``LIEBIAN_ALLOWED_PRIVATE_NETWORKS`` for some networks,
``LIEBIAN_ALLOW_PRIVATE_WEBHOOKS`` for all, set by the tests). The rules are kit/netguard.py;
deliveries connect through its ``PinnedTransport`` (webhooks/deliver.py)."""

from __future__ import annotations

from urllib.parse import urlsplit

from liebian.kit.errors import Invalid
from liebian.kit.netguard import ForbiddenAddress, Network, check_host

MAX_URL = 2000


def check_url(url: str, *, allow_private: bool, allowed: tuple[Network, ...] = ()) -> str:
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise _bad("url must start with http:// or https://", "invalid_webhook_url")
    if not parts.hostname:
        raise _bad(
            "url needs a host name, e.g. https://shop.example.com/hooks", "invalid_webhook_url"
        )
    if parts.username or parts.password:
        raise _bad(
            "url must not carry credentials; we sign every request instead (Liebian-Signature)",
            "invalid_webhook_url",
        )
    if len(url) > MAX_URL:
        raise _bad(f"url is longer than {MAX_URL} characters", "invalid_webhook_url")
    try:
        parts.port  # noqa: B018  (raises on a non-numeric port)
    except ValueError:
        raise _bad("url has an invalid port", "invalid_webhook_url") from None
    if not allow_private:
        # Every spelling of an address (0x7f000001, 2130706433, 127.1, [::ffff:7f00:1]) is
        # read as the resolver reads it; a name is checked again, resolved, at each delivery.
        try:
            check_host(parts.hostname, allowed)
        except ForbiddenAddress as exc:
            raise _bad(
                f"url points at {exc}; webhooks must reach a public host",
                "private_webhook_url",
            ) from None
    return url


def _bad(message: str, code: str) -> Invalid:
    return Invalid(message, code=code, details={"field": "url"})
