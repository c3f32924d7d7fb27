"""A limit of one per period lets the first request through whatever the clock reads. With
interval == period, a fresh key's wait is (now + period) - now - period: a few 1e-12 above 0
when now + period crosses a power of two (a monotonic clock of 8,132–8,192 s, i.e. about 2 h
16 min after boot: found as a CI failure of the wrong-key throttle at exactly that uptime)."""

from __future__ import annotations

from liebian.kit.ratelimit import LocalLimiter, Rate

# A clock value for which the unrounded arithmetic gives a positive wait.
NOW = 8165.7843655132265


def test_a_fresh_key_is_allowed_under_a_limit_of_one() -> None:
    rate = Rate(1, 60.0)
    assert (NOW + rate.interval) - NOW - rate.period > 0  # the rounding this guards against
    limiter = LocalLimiter()
    assert limiter.hit("k", rate, NOW, consume=False) == 0.0
    assert limiter.hit("k", rate, NOW) == 0.0
    assert 59.0 < limiter.hit("k", rate, NOW + 1.0) <= 59.0 + 1e-6  # then it waits
