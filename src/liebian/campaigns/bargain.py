"""Bargain (砍价) cut plans: how much each helper cuts off the price.

All amounts are integer 分. The plan for one bargain activity is fully determined by its rules
and a seed (the assist id), so:
- the price reaches ``floor_price`` exactly when the ``max_helpers``-th helper cuts, never
  earlier, never lower;
- every cut is at least 1 分 (a helper who "cut 0" would feel cheated);
- a retried or replayed help computes the very same cut (no RNG state is kept anywhere).

The service stores ``helpers_so_far`` and the current price; it asks ``next_cut`` for the cut of
the next helper and applies it with a compare-and-swap on the price.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from typing import Literal

from liebian.kit.errors import Invalid

CutMode = Literal["fixed", "random"]

# Large enough for any real campaign, small enough that computing a full schedule is instant.
MAX_HELPERS = 10_000
# ¥10,000,000 in 分: anything above is a typo, not a price.
MAX_PRICE = 1_000_000_000


@dataclass(frozen=True, slots=True)
class BargainRules:
    start_price: int
    floor_price: int
    max_helpers: int
    mode: CutMode = "random"
    # Bounds for random cuts; default to "anything from 1 分 to the whole remaining amount".
    min_cut: int | None = None
    max_cut: int | None = None

    def __post_init__(self) -> None:
        _check_rules(self)

    @property
    def total_cut(self) -> int:
        return self.start_price - self.floor_price

    @property
    def bounds(self) -> tuple[int, int]:
        lo = self.min_cut if self.min_cut is not None else 1
        hi = self.max_cut if self.max_cut is not None else self.total_cut
        return lo, hi


@dataclass(frozen=True, slots=True)
class Cut:
    helper_index: int  # 0-based: the n-th helper of this activity
    amount: int  # 分 cut off by this helper
    price_before: int
    price_after: int
    reaches_floor: bool


def _invalid(message: str, field: str) -> Invalid:
    return Invalid(message, code="invalid_bargain", details={"field": field})


def _check_rules(r: BargainRules) -> None:
    if r.mode not in ("fixed", "random"):
        raise _invalid("mode must be 'fixed' or 'random'", "mode")
    if not 0 < r.start_price <= MAX_PRICE:
        raise _invalid(f"start_price must be between 1 and {MAX_PRICE} 分", "start_price")
    if not 0 <= r.floor_price < r.start_price:
        raise _invalid("floor_price must be at least 0 and below start_price", "floor_price")
    if not 1 <= r.max_helpers <= MAX_HELPERS:
        raise _invalid(f"max_helpers must be between 1 and {MAX_HELPERS}", "max_helpers")
    total = r.start_price - r.floor_price
    if total < r.max_helpers:
        # Every helper must cut at least 1 分, so the gap must cover all of them.
        raise _invalid(
            f"start_price − floor_price ({total} 分) must be at least max_helpers "
            f"({r.max_helpers}) so that every helper cuts at least 1 分",
            "max_helpers",
        )
    if r.mode == "fixed":
        if r.min_cut is not None or r.max_cut is not None:
            raise _invalid("min_cut/max_cut apply to random mode only", "mode")
        return
    lo = r.min_cut if r.min_cut is not None else 1
    hi = r.max_cut if r.max_cut is not None else total
    if lo < 1:
        raise _invalid("min_cut must be at least 1 分", "min_cut")
    if hi < lo:
        raise _invalid("max_cut must be at least min_cut", "max_cut")
    # Feasibility: N cuts in [lo, hi] can only sum to `total` if N·lo ≤ total ≤ N·hi.
    if r.max_helpers * lo > total:
        raise _invalid(
            f"{r.max_helpers} helpers × min_cut {lo} 分 exceeds the total cut of {total} 分",
            "min_cut",
        )
    if r.max_helpers * hi < total:
        raise _invalid(
            f"{r.max_helpers} helpers × max_cut {hi} 分 cannot reach the floor "
            f"(total cut {total} 分); raise max_cut or max_helpers",
            "max_cut",
        )


def _rng(seed: str, helper_index: int) -> random.Random:
    # A per-helper RNG derived from (seed, index): no state to persist, identical on retry and
    # across processes/Python versions (sha256, not hash()).
    digest = hashlib.sha256(f"liebian-bargain:{seed}:{helper_index}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def _cut_amount(rules: BargainRules, seed: str, helper_index: int, remaining: int) -> int:
    helpers_left = rules.max_helpers - helper_index
    if helpers_left == 1:
        return remaining  # the last allowed helper lands exactly on the floor
    if rules.mode == "fixed":
        # Spread the remainder over the first helpers: e.g. 1000 over 3 → 334, 333, 333.
        base, extra = divmod(rules.total_cut, rules.max_helpers)
        return base + (1 if helper_index < extra else 0)
    lo, hi = rules.bounds
    # Keep the rest feasible: what remains after this cut must fit the remaining helpers.
    low = max(lo, remaining - (helpers_left - 1) * hi)
    high = min(hi, remaining - (helpers_left - 1) * lo)
    # "Double the mean" (as in WeChat red packets): bounded by 2× the fair share so early helpers
    # cut generously but cannot take almost everything, which would make later helps feel void.
    high_fair = max(low, min(high, 2 * remaining // helpers_left))
    return _rng(seed, helper_index).randint(low, high_fair)


def schedule(rules: BargainRules, seed: str) -> list[int]:
    """All cuts of the activity, in helper order; sums to ``start_price − floor_price``."""
    cuts: list[int] = []
    remaining = rules.total_cut
    for i in range(rules.max_helpers):
        amount = _cut_amount(rules, seed, i, remaining)
        cuts.append(amount)
        remaining -= amount
    return cuts


def next_cut(rules: BargainRules, seed: str, helpers_so_far: int) -> Cut:
    """The cut made by helper number ``helpers_so_far`` (0-based) of activity ``seed``.

    Raises ``Invalid`` when the activity already has ``max_helpers`` helps (the price is at the
    floor; the service should answer 409 before getting here).
    """
    if not 0 <= helpers_so_far < rules.max_helpers:
        raise Invalid(
            f"this bargain already has all {rules.max_helpers} helpers",
            code="bargain_complete",
            details={"helpers": helpers_so_far, "max_helpers": rules.max_helpers},
        )
    remaining = rules.total_cut
    amount = 0
    # Replaying the earlier cuts is O(n) and keeps the function pure; n ≤ MAX_HELPERS.
    for i in range(helpers_so_far + 1):
        amount = _cut_amount(rules, seed, i, remaining)
        if i < helpers_so_far:
            remaining -= amount
    price_before = rules.floor_price + remaining
    price_after = price_before - amount
    return Cut(
        helper_index=helpers_so_far,
        amount=amount,
        price_before=price_before,
        price_after=price_after,
        reaches_floor=price_after == rules.floor_price,
    )


def price_after(rules: BargainRules, seed: str, helpers: int) -> int:
    """Current price after ``helpers`` helps (0 ≤ helpers ≤ max_helpers)."""
    helpers = max(0, min(helpers, rules.max_helpers))
    return rules.start_price - sum(schedule(rules, seed)[:helpers])
