"""Authenticated keys remembered briefly, so a busy ingestion client costs no DB read per call.

Revoking a key publishes ``api_key.revoked``, which empties the cache at once in this process;
the TTL bounds how long another process (scale mode without the Redis relay) may lag.

Refused keys are remembered too, for a few seconds and in a bounded table of their own: a
client (or an attacker) repeating a wrong key then costs a hash and a dict lookup, not a
database read per request (issue 9). A string that is not shaped like a key at all is refused
before it is hashed, looked up or remembered, so a flood of fresh random strings costs a regex
per request and no database read and no memory. A key is 256 random bits shown once after its creation
commits, so no key can be refused before it exists; a refused key that is revoked stays
refused.

Wrong keys are also counted per client address (issue 9): a key-shaped string that no cache
knows costs a database read, so after ``failures.limit`` such refusals within
``failures.period`` seconds an address gets 429 with Retry-After for any key the cache does
not already know, before a thread or the database is involved. A client whose key is cached
keeps working from a throttled address (an office sharing one IP with a broken script).
Counted per process, like the other in-memory limits (decision 0040).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from liebian.kit.auth import API_KEY_PREFIX, Principal, hash_api_key, is_well_formed_api_key
from liebian.kit.errors import DomainError, RateLimited, Unauthorized
from liebian.kit.ratelimit import LocalLimiter, Rate

REVOKED_TOPIC = "api_key.revoked"

NEGATIVE_TTL = 10.0
NEGATIVE_CAPACITY = 10_000
# Wrong keys looked up in the database, per client address: 30 a minute, bursts included.
WRONG_KEYS = Rate(30, 60.0)


class KeyCache:
    def __init__(
        self,
        ttl_seconds: float = 30.0,
        max_entries: int = 10_000,
        *,
        negative_ttl: float = NEGATIVE_TTL,
        negative_capacity: int = NEGATIVE_CAPACITY,
        wrong_keys: Rate = WRONG_KEYS,
    ) -> None:
        self.ttl = ttl_seconds
        self.max_entries = max_entries
        self.negative_ttl = negative_ttl
        self.negative_capacity = negative_capacity
        self._entries: dict[str, tuple[Principal, float]] = {}
        # digest → (message, code, until): a fresh exception per refusal (re-raising one
        # instance would grow its traceback with every request).
        self._refused: dict[str, tuple[str, str, float]] = {}
        self._lock = threading.Lock()
        self.wrong_keys = wrong_keys
        self._wrong = LocalLimiter(max_keys=50_000)
        self.throttled_count = 0  # requests answered 429 here (a metric)

    def get(self, plaintext: str) -> Principal | None:
        """The key's principal if it is cached (a dict lookup: fine on the event loop)."""
        if not is_well_formed_api_key(plaintext):
            return None
        entry = self._entries.get(hash_api_key(plaintext))
        if entry is None or entry[1] < time.monotonic():
            return None
        return entry[0]

    def refusal(self, plaintext: str) -> Unauthorized | None:
        """The error ``plaintext`` was refused with in the last ``negative_ttl`` seconds, or the
        error for a string that cannot be a key (no hash, no database read)."""
        if not is_well_formed_api_key(plaintext):
            return malformed(plaintext)
        refused = self._refused.get(hash_api_key(plaintext))
        if refused is None or refused[2] < time.monotonic():
            return None
        return Unauthorized(refused[0], code=refused[1])

    def refusal_for(self, plaintext: str, ip: str) -> DomainError | None:
        """What a key the cache does not hold gets without a read: its remembered refusal,
        or the address's throttle — unless the key was valid here before (its cache entry
        only expired), so a client sharing an address with a key-guesser keeps working."""
        refused = self.refusal(plaintext)
        if refused is not None:
            return refused
        if hash_api_key(plaintext) in self._entries:
            return None
        return self.throttled(ip)

    def throttled(self, ip: str) -> RateLimited | None:
        """The 429 for an address that sent too many wrong keys lately, else None (a dict
        lookup: fine on the event loop). Asks only; :meth:`resolve` counts."""
        rate = self.wrong_keys
        if not ip or not rate.enabled:
            return None
        wait = self._wrong.hit(ip, rate, time.monotonic(), consume=False)
        if not wait:
            return None
        self.throttled_count += 1
        return RateLimited(
            f"too many wrong API keys from your address ({rate.limit} in "
            f"{rate.period:g} s): check the key, then retry after the wait",
            code="too_many_wrong_keys",
            retry_after=int(wait) + 1,
        )

    def resolve(
        self, plaintext: str, lookup: Callable[[str], Principal], ip: str = ""
    ) -> Principal:
        """The cached principal, the remembered refusal (raised), the address's throttle
        (raised), or ``lookup(plaintext)`` — a database read: call this from a worker thread —
        whose outcome is remembered; a refusal counts against ``ip``."""
        principal = self.get(plaintext)
        if principal is not None:
            return principal
        refused = self.refusal_for(plaintext, ip)
        if refused is not None:
            raise refused
        try:
            principal = lookup(plaintext)
        except Unauthorized as exc:
            self.refuse(plaintext, exc)
            if ip and self.wrong_keys.enabled:
                self._wrong.hit(ip, self.wrong_keys, time.monotonic())
            raise
        self.put(plaintext, principal)
        return principal

    def put(self, plaintext: str, principal: Principal) -> None:
        with self._lock:
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
            self._entries[hash_api_key(plaintext)] = (principal, time.monotonic() + self.ttl)

    def refuse(self, plaintext: str, error: Unauthorized) -> None:
        """Remember that ``plaintext`` was refused with ``error``."""
        with self._lock:
            if len(self._refused) >= self.negative_capacity:
                # A flood of distinct wrong keys: start over, stay bounded.
                self._refused.clear()
            self._refused[hash_api_key(plaintext)] = (
                error.message,
                error.code,
                time.monotonic() + self.negative_ttl,
            )

    def clear(self, _payload: object = None) -> None:
        with self._lock:
            self._entries.clear()
            self._refused.clear()


def malformed(plaintext: str) -> Unauthorized:
    """The refusal of a string that is not shaped like a key (says what to check)."""
    if not plaintext.startswith(API_KEY_PREFIX):
        return Unauthorized("API keys start with 'lb_'; send it as 'Authorization: Bearer lb_…'")
    return Unauthorized(
        "this is not a whole API key (a key is 'lb_' and 43 letters, digits, '-' or '_'): "
        "check that it was copied in full",
        code="invalid_api_key",
    )
