"""Authenticated keys remembered briefly, so a busy ingestion client costs no DB read per call.

Revoking a key publishes ``api_key.revoked``, which empties the cache at once in this process;
the TTL bounds how long another process (scale mode without the Redis relay) may lag.
"""

from __future__ import annotations

import threading
import time

from liebian.kit.auth import Principal, hash_api_key

REVOKED_TOPIC = "api_key.revoked"


class KeyCache:
    def __init__(self, ttl_seconds: float = 30.0, max_entries: int = 10_000) -> None:
        self.ttl = ttl_seconds
        self.max_entries = max_entries
        self._entries: dict[str, tuple[Principal, float]] = {}
        self._lock = threading.Lock()

    def get(self, plaintext: str) -> Principal | None:
        entry = self._entries.get(hash_api_key(plaintext))
        if entry is None or entry[1] < time.monotonic():
            return None
        return entry[0]

    def put(self, plaintext: str, principal: Principal) -> None:
        with self._lock:
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
            self._entries[hash_api_key(plaintext)] = (principal, time.monotonic() + self.ttl)

    def clear(self, _payload: object = None) -> None:
        with self._lock:
            self._entries.clear()
