"""Canonical forms of emails and phone numbers, for comparing identities in fraud checks.

The point is not validation for delivery but *equivalence*: two spellings that reach the same
mailbox or the same handset must normalize to the same string, so that a referrer cannot refer
"themselves" by typing ``j.o.h.n+1@gmail.com`` or ``+86 138-0013-8000``.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

from liebian.kit.errors import Invalid

# Gmail ignores dots in the local part and everything after "+"; googlemail.com is the same
# mailbox namespace (legacy German/UK domain).
_GMAIL_DOMAINS = frozenset({"gmail.com", "googlemail.com"})

# Providers where "local+tag@domain" is delivered to "local@domain". Dots are significant here,
# so only the tag is removed. Yahoo uses "-" for its disposable addresses, not "+", and is
# deliberately absent: stripping "-" would merge distinct real mailboxes.
_PLUS_TAG_DOMAINS = frozenset(
    {
        "outlook.com",
        "hotmail.com",
        "live.com",
        "msn.com",
        "icloud.com",
        "me.com",
        "mac.com",
        "protonmail.com",
        "protonmail.ch",
        "proton.me",
        "pm.me",
        "fastmail.com",
        "fastmail.fm",
        "zoho.com",
        "yandex.com",
        "yandex.ru",
    }
)

# Deliberately loose: we only need something that has one "@" and a dotted domain. Anything
# stricter rejects real-world addresses (quoted local parts, new TLDs).
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")

# Mainland China mobile numbers: 11 digits starting with 1 and a second digit 3-9.
_CN_MOBILE_RE = re.compile(r"^1[3-9]\d{9}$")
# Characters people type between digits: spaces (incl. full-width), dashes, dots, parentheses.
_PHONE_SEPARATORS_RE = re.compile(r"[\s\-\.\(\)\u3000\u2010-\u2015\uff08\uff09\uff0d]")


def normalize_email(raw: str) -> str:
    """Return the canonical mailbox for ``raw``.

    Lowercases everything (mailbox local parts are case-insensitive at every provider that
    matters here), folds googlemail.com into gmail.com, removes dots and +tags for Gmail and
    +tags for the providers in ``_PLUS_TAG_DOMAINS``.

    Raises ``Invalid`` when ``raw`` is not shaped like an email address.
    """
    email = raw.strip().lower()
    if not _EMAIL_RE.match(email):
        raise Invalid(
            f"not an email address: {raw!r}", code="invalid_email", details={"field": "email"}
        )
    local, _, domain = email.rpartition("@")
    domain = domain.rstrip(".")
    if domain in _GMAIL_DOMAINS:
        local = local.split("+", 1)[0].replace(".", "")
        domain = "gmail.com"
    elif domain in _PLUS_TAG_DOMAINS:
        local = local.split("+", 1)[0]
    if not local:
        # "+tag@gmail.com" or ".@gmail.com" collapse to nothing: not a real mailbox.
        raise Invalid(
            f"email has an empty mailbox name: {raw!r}",
            code="invalid_email",
            details={"field": "email"},
        )
    return f"{local}@{domain}"


def email_domain(email: str) -> str:
    """The domain part of an (already normalized or raw) email, lowercased."""
    return email.rpartition("@")[2].strip().lower().rstrip(".")


def normalize_phone(raw: str) -> str:
    """Return a canonical phone number string.

    - Chinese mobiles written as ``+86 138 0013 8000``, ``0086-13800138000``,
      ``8613800138000`` or ``138-0013-8000`` all become ``13800138000`` (11 digits, no
      country code), because that is how Chinese users and SMS providers write them.
    - Other numbers with an international prefix (``+`` or ``00``) become ``+<digits>``
      (E.164-like); numbers without one are kept as bare digits since we cannot know the
      country.

    Raises ``Invalid`` for anything with letters or an implausible length.
    """
    compact = _PHONE_SEPARATORS_RE.sub("", raw.strip())
    # Full-width digits and plus sign (common from Chinese IMEs) → ASCII.
    compact = compact.translate(_FULLWIDTH)
    international = compact.startswith("+")
    digits = compact[1:] if international else compact
    if not digits.isdigit() or not digits.isascii():
        raise Invalid(
            f"not a phone number: {raw!r}", code="invalid_phone", details={"field": "phone"}
        )
    if digits.startswith("00"):
        international = True
        digits = digits[2:]

    # China: +86 / 0086 / bare 86 in front of an 11-digit mobile. A bare "86" prefix is only
    # stripped when what remains is a valid mobile, so a foreign national number starting with
    # 86 is left alone.
    if _CN_MOBILE_RE.match(digits) and not international:
        return digits
    if digits.startswith("86") and _CN_MOBILE_RE.match(digits[2:]):
        return digits[2:]

    # E.164 allows at most 15 digits; fewer than 5 is a short code or a typo.
    if not 5 <= len(digits) <= 15:
        raise Invalid(
            f"phone number has an implausible length: {raw!r}",
            code="invalid_phone",
            details={"field": "phone"},
        )
    return f"+{digits}" if international else digits


_FULLWIDTH = str.maketrans({**{chr(0xFF10 + i): str(i) for i in range(10)}, "\uff0b": "+"})


@cache
def disposable_domains() -> frozenset[str]:
    """The shipped list of disposable mail domains (loaded once per process)."""
    text = (
        resources.files("liebian.risk")
        .joinpath("data/disposable_domains.txt")
        .read_text(encoding="utf-8")
    )
    return frozenset(
        line.strip().lower()
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    )


def is_disposable_email(domain: str) -> bool:
    """True when ``domain`` (or a full address) belongs to a disposable mail provider.

    Subdomains count too (``x.mailinator.com``): several providers hand out random
    subdomains precisely to dodge exact-match lists.
    """
    host = email_domain(domain) if "@" in domain else domain.strip().lower().rstrip(".")
    listed = disposable_domains()
    labels = host.split(".")
    # Check "a.b.c", "b.c" — never the bare TLD.
    return any(".".join(labels[i:]) in listed for i in range(len(labels) - 1))
