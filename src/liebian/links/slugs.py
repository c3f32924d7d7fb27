"""The public path namespace: which slugs are reserved, and how random ones are made."""

from __future__ import annotations

import secrets
import string

# First path segments that belong to the application, never to a short link.
RESERVED_SEGMENTS = frozenset(
    {
        "", "api", "admin", "static", "docs", "redoc", "openapi.json", "healthz", "readyz", "t.js",
        "favicon.ico", "robots.txt", "p", "g", "a", "h5", "console", "login", "logout",
        "assets", "webhooks", "metrics", "well-known", ".well-known", "lc", "qr", "s", "collect",
        "c",  # communities: the entry page /c/{community}
    }
)  # fmt: skip

# No look-alikes (0/O, 1/l/I) so a slug read aloud or typed from a poster still works.
_ALPHABET = "".join(c for c in string.ascii_letters + string.digits if c not in "0O1lI")


def is_reserved(slug: str) -> bool:
    return slug.lower() in RESERVED_SEGMENTS


def random_slug(length: int = 7) -> str:
    # One random draw per slug instead of one per character: bulk imports make 10,000 at once.
    # A byte per character plus two spare bytes: the modulo bias stays below one in 65,000.
    value = int.from_bytes(secrets.token_bytes(length + 2), "big")
    chars = []
    for _ in range(length):
        value, index = divmod(value, len(_ALPHABET))
        chars.append(_ALPHABET[index])
    return "".join(chars)
