"""The risk rules measured on a seeded synthetic population (see liebian.risk.population)."""

from __future__ import annotations

import pytest

from liebian.risk.population import (
    FRAUD_KINDS,
    HONEST_KINDS,
    SHARED_IP_KINDS,
    evaluate,
    generate_population,
)
from liebian.risk.scoring import RiskPolicy, assess, decide

SEEDS = [42, 7, 2025]


@pytest.fixture(scope="module", params=SEEDS)
def population(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    return generate_population(request.param)


def test_population_is_deterministic() -> None:
    a, b = generate_population(11), generate_population(11)
    assert a.counts() == b.counts()
    assert [r.context for r in a.referrals[:200]] == [r.context for r in b.referrals[:200]]
    assert evaluate(a) == evaluate(b)
    assert generate_population(12).counts() != a.counts()


def test_population_has_every_kind(population) -> None:  # type: ignore[no-untyped-def]
    kinds = set(population.counts())
    assert kinds == set(HONEST_KINDS) | set(FRAUD_KINDS)
    honest = sum(1 for r in population.referrals if not r.fraud)
    shared = sum(1 for r in population.referrals if r.kind in SHARED_IP_KINDS)
    assert honest > 3_000 and shared > 1_000  # plenty of honest people behind shared IPs


@pytest.mark.parametrize("mode", ["review", "block"])
def test_precision_and_recall_floors(population, mode: str) -> None:  # type: ignore[no-untyped-def]
    m = evaluate(population, RiskPolicy(mode=mode))  # type: ignore[arg-type]
    assert m.recall >= 0.72, m
    assert m.precision >= 0.72, m


def test_no_honest_shared_ip_user_is_blocked(population) -> None:  # type: ignore[no-untyped-def]
    m = evaluate(population, RiskPolicy(mode="block"))
    assert m.blocked_honest_shared_ip == 0
    # Held for review is allowed but must stay rare for office/NAT/family users.
    shared_total = sum(m.by_kind[k][0] for k in SHARED_IP_KINDS)
    assert m.held_honest_shared_ip / shared_total < 0.02, m


def test_strictest_policy_never_acts_on_a_shared_ip_alone(population) -> None:  # type: ignore[no-untyped-def]
    strictest = RiskPolicy(mode="block", hold_at=16, block_at=16)
    ip_only = 0
    for item in population.referrals:
        assessment = assess(item.context, strictest)
        if {s.code for s in assessment.signals} == {"same_ip"}:
            ip_only += 1
            assert decide(assessment, strictest) == "approved"
    assert ip_only > 500


def test_identity_fraud_is_caught_and_stealth_is_not(population) -> None:  # type: ignore[no-untyped-def]
    m = evaluate(population)
    for kind in ("self_same_device", "email_alias", "phone_variant"):
        count, flagged, _ = m.by_kind[kind]
        assert flagged == count, kind
    for kind in ("disposable_farm", "burst", "device_farm", "refund_abuse"):
        count, flagged, _ = m.by_kind[kind]
        assert flagged >= count * 0.4, (kind, m.by_kind[kind])
    # Planted fraud with no observable trace: if this were caught, the rules would be
    # keying on the generator rather than on evidence.
    assert m.by_kind["stealth"][1] == 0


def test_rings_need_the_sweep(population) -> None:  # type: ignore[no-untyped-def]
    online = evaluate(population, ring_sweep=False).by_kind["ring"]
    swept = evaluate(population, ring_sweep=True).by_kind["ring"]
    assert 0 < online[1] < online[0]  # online scoring sees only the edge that closes a ring
    assert swept[1] == swept[0]


def test_allow_policy_flags_nothing(population) -> None:  # type: ignore[no-untyped-def]
    m = evaluate(population, RiskPolicy(mode="allow"))
    assert m.true_positive == m.false_positive == 0
