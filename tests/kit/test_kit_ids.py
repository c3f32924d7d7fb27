"""Public ids: the faster ULID text (two characters per lookup) is the one-per-5-bits text."""

from __future__ import annotations

import random
import time

import pytest

from liebian.kit import ids


def _one_per_five_bits(value: int) -> str:
    chars = []
    for _ in range(26):
        chars.append(ids._ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def test_ulid_text_is_unchanged(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(7)
    values = [0, (1 << 128) - 1, 1 << 80, (1 << 80) - 1]
    values += [(rng.getrandbits(48) << 80) | rng.getrandbits(80) for _ in range(2000)]
    for value in values:
        millis, noise = value >> 80, value & ((1 << 80) - 1)
        monkeypatch.setattr(time, "time", lambda m=millis: (m + 0.5) / 1000)
        monkeypatch.setattr(ids, "_noise", lambda r=noise: r)
        assert ids.ulid() == _one_per_five_bits(value)
    monkeypatch.undo()
    assert all(ids.has_prefix(ids.new_id("cnv"), "cnv") for _ in range(50))


def test_noise_is_buffered_randomness_never_shared() -> None:
    noise = ids._Noise()
    drawn = [noise() for _ in range(1_000)]  # across refills
    assert len(set(drawn)) == len(drawn) and all(0 <= v < 1 << 80 for v in drawn)
    assert max(drawn).bit_length() > 70  # 80 random bits, not a counter
    noise()
    noise.reset()  # what a forked child does: nothing of the parent's buffer is left
    assert noise._values == []
