"""Finding people without decrypting the table (decision 0016).

- external id: equality on the plain column (it is the brand's own id, not PII).
- phone / email: the keyed hash of the *normalized* value (``kit.crypto.PiiCipher.lookup_hash``),
  the same hash fraud checks compare.
- nickname prefix: the nickname is normalized (NFKC, case-folded, whitespace removed) and a
  short keyed hash of each of its first 1, 2, 3 and 4 characters is stored (``nick_h1``…
  ``nick_h4``). A query of n ≤ 4 characters is an indexed equality on ``nick_hn``; a longer
  one narrows on ``nick_h4`` and the candidates' nicknames are decrypted and compared.

The hashes are 64 bits of HMAC-SHA256 under the PII key, domain-separated per length, so they
tell nothing without the key; one-character hashes do reveal which people share a first
character, which a prefix index cannot avoid.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from liebian.kit.crypto import PiiCipher
from liebian.kit.errors import Invalid
from liebian.risk.normalize import normalize_email, normalize_phone

PREFIX_LENGTHS = (1, 2, 3, 4)
_SPACE = re.compile(r"\s+")
_PHONEISH = re.compile(r"^[+\d][\d\s\-().\u3000]{5,}$")


def normalize_nickname(value: str) -> str:
    return _SPACE.sub("", unicodedata.normalize("NFKC", value).casefold())


def prefix_hash(cipher: PiiCipher, prefix: str) -> str:
    digest = cipher.lookup_hash(f"nick{len(prefix)}:{prefix}")
    assert digest is not None
    return digest[:16]


def nickname_hashes(cipher: PiiCipher, nickname: str | None) -> dict[str, str | None]:
    """The ``nick_h1``…``nick_h4`` column values for a nickname (None past its length)."""
    norm = normalize_nickname(nickname or "")
    return {
        f"nick_h{n}": prefix_hash(cipher, norm[:n]) if len(norm) >= n else None
        for n in PREFIX_LENGTHS
    }


@dataclass(frozen=True, slots=True)
class SearchTerms:
    """What one search box string may mean; the list matches any of them."""

    external_id: str
    phone_hash: str | None
    email_hash: str | None
    nick_column: str | None  # nick_h1…nick_h4
    nick_hash: str | None
    nick_full: str | None  # set when the prefix is longer than the hashes (verify by decrypting)


def terms(cipher: PiiCipher, q: str) -> SearchTerms:
    q = q.strip()
    if not q or len(q) > 128:
        raise Invalid(
            "q must be 1–128 characters: an external id, a phone number, an email or the "
            "start of a nickname",
            code="invalid_query",
            details={"field": "q"},
        )
    phone_hash = email_hash = None
    if "@" in q:
        try:
            email_hash = cipher.lookup_hash(normalize_email(q))
        except Invalid:
            email_hash = None
    elif _PHONEISH.match(q):
        try:
            phone_hash = cipher.lookup_hash(normalize_phone(q))
        except Invalid:
            phone_hash = None
    norm = normalize_nickname(q)
    column = nick_hash = full = None
    if norm:
        n = min(len(norm), PREFIX_LENGTHS[-1])
        column, nick_hash = f"nick_h{n}", prefix_hash(cipher, norm[:n])
        full = norm if len(norm) > n else None
    return SearchTerms(q, phone_hash, email_hash, column, nick_hash, full)
