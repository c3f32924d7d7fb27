"""Public ids: a kind prefix plus a ULID (time-sortable, 26 Crockford base32 characters).

``lnk_01JD…`` says in a log line what it names and sorts by creation time, which is what
cursor pagination relies on.
"""

from __future__ import annotations

import os
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


# Two characters per 10 bits: 13 lookups instead of 26 (~1.9 against ~6.8 µs an id; the
# hooks worker makes one or two per conversion, issue 10). Same text as one per 5 bits.
_PAIRS = [a + b for a in _ALPHABET for b in _ALPHABET]


class _Noise:
    """80-bit random values cut from one ``os.urandom`` call per 400 ids: the syscall and
    conversion per id were ~5 µs, now ~2.5, of an id's ~7 µs (measured in process on the
    loaded bench machine; the participant pages make two ids per view, decision 0042). ``list.pop`` is atomic, so threads never share a value; a racing refill only adds
    fresh ones. Emptied in a forked child, which must not reuse its parent's bytes."""

    _BYTES = 10
    _REFILL = 400

    def __init__(self) -> None:
        self._values: list[int] = []

    def reset(self) -> None:
        self._values = []

    def __call__(self) -> int:
        try:
            return self._values.pop()
        except IndexError:
            raw = os.urandom(self._BYTES * self._REFILL)
            step = self._BYTES
            self._values = [
                int.from_bytes(raw[i : i + step], "big") for i in range(0, len(raw), step)
            ]
            return self._values.pop()


_noise = _Noise()
os.register_at_fork(after_in_child=_noise.reset)


def ulid() -> str:
    value = (int(time.time() * 1000) << 80) | _noise()
    p = _PAIRS
    return "".join(
        (
            p[(value >> 120) & 1023], p[(value >> 110) & 1023], p[(value >> 100) & 1023],
            p[(value >> 90) & 1023], p[(value >> 80) & 1023], p[(value >> 70) & 1023],
            p[(value >> 60) & 1023], p[(value >> 50) & 1023], p[(value >> 40) & 1023],
            p[(value >> 30) & 1023], p[(value >> 20) & 1023], p[(value >> 10) & 1023],
            p[value & 1023],
        )
    )  # fmt: skip


def new_id(prefix: str) -> str:
    return f"{prefix}_{ulid()}"


def has_prefix(value: str, prefix: str) -> bool:
    return value.startswith(prefix + "_") and len(value) == len(prefix) + 27
