"""Destination checks shared by links, live codes and campaigns."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from liebian.kit.errors import Invalid
from liebian.kit.netguard import ForbiddenAddress, Network, check_host

_WHITESPACE = re.compile(r"\s")


def validate_destination(
    url: str,
    blocklist: list[str] | tuple[str, ...] = (),
    *,
    field: str = "url",
    allowed_networks: tuple[Network, ...] = (),
) -> str:
    """http(s) only, a real host, no embedded credentials, not on the blocklist.

    Returns the URL unchanged so callers can use it inline. ``javascript:``, ``data:``,
    ``file:`` and friends are refused because a redirect to them runs in the visitor's page.
    """
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower().rstrip(".")
        _ = parts.port  # raises on a non-numeric port
    except ValueError as exc:
        raise Invalid(f"{field} is not a valid URL", details={"field": field}) from exc
    if "://" not in url and (not parts.scheme or "." in parts.scheme):
        # "example.com/x" or "example.com:8080": a host without its scheme, not a scheme.
        raise Invalid(
            f"{field} needs http:// or https:// in front: write https://{url.strip()} "
            f"(网址需以 http:// 或 https:// 开头，例如 https://{url.strip()})",
            code="missing_scheme",
            details={"field": field, "suggestion": f"https://{url.strip()}"},
        )
    if parts.scheme.lower() not in ("http", "https"):
        raise Invalid(
            f"{field} must start with http:// or https:// (got '{parts.scheme or 'no scheme'}:')",
            code="bad_scheme",
            details={"field": field},
        )
    if not host:
        raise Invalid(f"{field} has no host name", details={"field": field})
    if parts.username or parts.password:
        # user:pass@host hides the real host from a quick glance: a phishing staple.
        raise Invalid(f"{field} may not carry a user name or password", details={"field": field})
    if _WHITESPACE.search(url):
        raise Invalid(
            f"{field} may not contain spaces; percent-encode them", details={"field": field}
        )
    try:
        # 127.0.0.1, 0x7f000001, [::1], 169.254.169.254, localhost: nothing a campaign
        # should send people to, and the first thing an attacker probes.
        check_host(host, allowed_networks)
    except ForbiddenAddress as exc:
        raise Invalid(
            f"{field} points at a private, loopback, link-local or reserved address ({host});"
            " use a public address",
            code="private_destination",
            details={"field": field, "host": host},
        ) from exc
    for blocked in blocklist:
        blocked = blocked.lower().strip(".")
        if host == blocked or host.endswith("." + blocked):
            raise Invalid(
                f"{field} points at {host}, which is on this server's blocklist",
                code="blocked_host",
                details={"field": field, "host": host},
            )
    return url
