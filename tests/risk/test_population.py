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


# ── ranking on small held-back style mixtures (issue 10 §2) ────────────────────────────────


def test_auc_is_the_mann_whitney_statistic() -> None:
    from liebian.risk.population import auc

    assert auc([3, 4], [1, 2]) == 1.0
    assert auc([1, 2], [3, 4]) == 0.0
    assert auc([2], [2]) == 0.5  # a tie counts half
    assert auc([1, 3], [2, 2]) == 0.5


@pytest.mark.parametrize("mixture", ["issue10", "office_heavy", "farm_heavy"])
@pytest.mark.parametrize("seed", [101, 202])
def test_revised_scores_rank_fraud_above_honest_on_other_mixtures(mixture: str, seed: int) -> None:
    """Seeds and mixtures the weights were not tuned on (the bench reports them all):
    re-scoring earlier referrals with later evidence lifts AUC to ≥ 0.95, every farm member
    included, with no honest referral blocked."""
    from liebian.risk.population import generate_mixture, rank

    population = generate_mixture(seed, mixture)
    arrived, revised = rank(population, revised=False), rank(population, revised=True)
    assert revised.auc >= 0.95, revised
    assert revised.auc_by_kind["device_farm"] > arrived.auc_by_kind["device_farm"]
    assert revised.auc_by_kind["device_farm"] >= 0.95
    assert revised.blocked_honest == 0
    # Disposable mailboxes outrank honest shared-IP referrals that show nothing else.
    assert revised.min_fraud_score["disposable"] > 35


def test_weights_follow_the_evidence() -> None:
    """Order the signals by how often they fire on fraud (measured on generated mixtures):
    a signal that is fraud less often never weighs more than one that is fraud more often."""
    from liebian.risk.population import MIXTURES, generate_mixture, signal_evidence
    from liebian.risk.signals import W_DISPOSABLE, W_SAME_IP, W_SAME_IP_UA

    evidence = signal_evidence(generate_mixture(s, m) for s in (5, 6) for m in MIXTURES)
    assert evidence["disposable_email:medium"] > evidence["same_ip_ua:medium"]
    assert evidence["same_ip_ua:medium"] > evidence["same_ip:weak"]
    assert W_DISPOSABLE > W_SAME_IP_UA > W_SAME_IP
