"""Webhook targets: http(s) only, no credentials, and no private or loopback hosts (SSRF)
unless the operator allowed them (``LIEBIAN_ALLOW_PRIVATE_WEBHOOKS``, set by the tests)."""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from liebian.kit.errors import Invalid

MAX_URL = 2000
_LOCAL_SUFFIXES = (".localhost", ".local", ".internal", ".lan", ".home.arpa")


def check_url(url: str, *, allow_private: bool) -> str:
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
    if not allow_private and _is_local_name(parts.hostname):
        raise _bad(
            "url points at a private, loopback or link-local address; webhooks must reach a public host",
            "private_webhook_url",
        )
    return url


def _is_local_name(host: str) -> bool:
    host = host.lower().rstrip(".")
    if host == "localhost" or host.endswith(_LOCAL_SUFFIXES):
        return True
    try:
        return not ipaddress.ip_address(host).is_global
    except ValueError:
        return False  # a name: checked again on every delivery, after resolving it


def resolves_private(host: str, port: int) -> bool:
    """Checked at delivery time too: a public name may later resolve to a private address."""
    if _is_local_name(host):
        return True
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except OSError:
        return False  # the POST itself will fail and be retried
    return any(not ipaddress.ip_address(str(info[4][0]).split("%")[0]).is_global for info in infos)


def _bad(message: str, code: str) -> Invalid:
    return Invalid(message, code=code, details={"field": "url"})
