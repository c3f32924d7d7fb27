"""Security headers of the participant-facing HTML pages (short-link pages, live-code
pages, the fission pages /p /g /a).

The pages run no script and load nothing from elsewhere: the policy allows no script at all,
images only from this origin (the live-code group QR) or inline data, forms posting back
here. Their CSS is inline (one request on a weak network), and the progress bars set a
width in a ``style`` attribute, which no hash or nonce can cover, hence
``style-src 'unsafe-inline'``: styles cannot run code, and every value in them is escaped.
The short-link pages, which have no style attributes, use a stricter policy of their own
(redirect/pages.py: their one stylesheet by hash).
"""

from __future__ import annotations

from typing import Final

PAGE_CSP: Final = (
    "default-src 'none'; script-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:;"
    " form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)

PAGE_HEADERS: Final[dict[str, str]] = {
    "content-security-policy": PAGE_CSP,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
}

PAGE_HEADERS_RAW: Final[list[tuple[bytes, bytes]]] = [
    (k.encode(), v.encode()) for k, v in PAGE_HEADERS.items()
]
