"""Property-style checks over many seeded rule sets (plain loops, no extra dependency)."""

from __future__ import annotations

import random

import pytest

from liebian.campaigns.bargain import BargainRules, next_cut, price_after, schedule
from liebian.kit.errors import Invalid


def _random_rules(rng: random.Random) -> BargainRules:
    max_helpers = rng.choice([1, 2, 3, 5, 10, 30, 100, rng.randint(1, 200)])
    floor = rng.choice([0, 1, 990, rng.randint(0, 50_000)])
    total = rng.randint(max_helpers, max_helpers * rng.choice([1, 2, 50, 1000]))
    start = floor + total
    if rng.random() < 0.3:
        return BargainRules(start, floor, max_helpers, "fixed")
    # Random bounds that are feasible: lo ≤ total/N ≤ hi.
    share = total // max_helpers
    lo = rng.randint(1, max(1, share))
    hi = rng.randint(-(-total // max_helpers), total)
    if rng.random() < 0.3:
        return BargainRules(start, floor, max_helpers, "random")
    return BargainRules(start, floor, max_helpers, "random", min_cut=lo, max_cut=hi)


def test_schedules_reach_the_floor_exactly_at_the_last_helper() -> None:
    rng = random.Random(20250301)
    for case in range(600):
        rules = _random_rules(rng)
        seed = f"ast_{case}"
        cuts = schedule(rules, seed)
        assert len(cuts) == rules.max_helpers
        assert sum(cuts) == rules.start_price - rules.floor_price, rules
        assert all(c >= 1 for c in cuts), rules
        if rules.mode == "random":
            lo, hi = rules.bounds
            assert all(lo <= c <= hi for c in cuts), (rules, cuts)
        else:
            assert max(cuts) - min(cuts) <= 1
        # Price is strictly decreasing and only touches the floor at the end.
        price = rules.start_price
        for i, c in enumerate(cuts):
            price -= c
            assert price >= rules.floor_price
            assert (price == rules.floor_price) == (i == rules.max_helpers - 1)


def test_next_cut_matches_schedule_and_is_deterministic() -> None:
    rng = random.Random(7)
    for case in range(60):
        rules = _random_rules(rng)
        seed = f"ast_{case}"
        cuts = schedule(rules, seed)
        price = rules.start_price
        for i in range(rules.max_helpers):
            cut = next_cut(rules, seed, i)
            retry = next_cut(rules, seed, i)  # a retried help computes the same cut
            assert cut == retry
            assert cut.amount == cuts[i]
            assert cut.price_before == price
            price -= cut.amount
            assert cut.price_after == price == price_after(rules, seed, i + 1)
            assert cut.reaches_floor == (i == rules.max_helpers - 1)
        with pytest.raises(Invalid) as err:
            next_cut(rules, seed, rules.max_helpers)
        assert err.value.code == "bargain_complete"


def test_different_activities_get_different_random_cuts() -> None:
    rules = BargainRules(start_price=9_900, floor_price=0, max_helpers=10, mode="random")
    schedules = {tuple(schedule(rules, f"ast_{i}")) for i in range(50)}
    assert len(schedules) > 40
    # The same seed in a "new process" (fresh call) gives the same schedule.
    assert schedule(rules, "ast_x") == schedule(rules, "ast_x")


def test_fixed_mode_spreads_the_remainder() -> None:
    rules = BargainRules(start_price=1_000, floor_price=0, max_helpers=3, mode="fixed")
    assert schedule(rules, "any") == [334, 333, 333]


def test_random_cuts_are_not_front_loaded_to_nothing() -> None:
    # "Double the mean": no early helper takes more than twice the fair share of what is left.
    rules = BargainRules(start_price=10_000, floor_price=100, max_helpers=20, mode="random")
    for s in range(100):
        remaining = rules.total_cut
        for i, c in enumerate(schedule(rules, str(s))[:-1]):
            assert c <= max(1, 2 * remaining // (rules.max_helpers - i))
            remaining -= c


def test_single_helper_cuts_everything() -> None:
    rules = BargainRules(start_price=500, floor_price=1, max_helpers=1)
    assert schedule(rules, "a") == [499]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"start_price": 0, "floor_price": 0, "max_helpers": 1}, "start_price"),
        ({"start_price": -5, "floor_price": 0, "max_helpers": 1}, "start_price"),
        ({"start_price": 10**12, "floor_price": 0, "max_helpers": 1}, "start_price"),
        ({"start_price": 100, "floor_price": 100, "max_helpers": 1}, "floor_price"),
        ({"start_price": 100, "floor_price": -1, "max_helpers": 1}, "floor_price"),
        ({"start_price": 100, "floor_price": 0, "max_helpers": 0}, "max_helpers"),
        ({"start_price": 100, "floor_price": 0, "max_helpers": 101}, "max_helpers"),
        ({"start_price": 100, "floor_price": 0, "max_helpers": 5, "min_cut": 0}, "min_cut"),
        ({"start_price": 100, "floor_price": 0, "max_helpers": 5, "min_cut": 30}, "min_cut"),
        ({"start_price": 100, "floor_price": 0, "max_helpers": 5, "max_cut": 10}, "max_cut"),
        (
            {"start_price": 100, "floor_price": 0, "max_helpers": 5, "min_cut": 9, "max_cut": 8},
            "max_cut",
        ),
        (
            {
                "start_price": 100,
                "floor_price": 0,
                "max_helpers": 5,
                "mode": "fixed",
                "max_cut": 50,
            },
            "mode",
        ),
        ({"start_price": 100, "floor_price": 0, "max_helpers": 5, "mode": "weird"}, "mode"),
    ],
)
def test_bad_rules_are_rejected_with_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(Invalid) as err:
        BargainRules(**kwargs)  # type: ignore[arg-type]
    assert err.value.status == 422
    assert err.value.details["field"] == field
