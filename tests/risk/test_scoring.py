from __future__ import annotations

import zlib
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from liebian.risk.normalize import normalize_email, normalize_phone
from liebian.risk.scoring import (
    WEAK_ONLY_CAP,
    Assessment,
    RiskPolicy,
    assess,
    combine,
    decide,
    score_referral,
)
from liebian.risk.signals import (
    Identity,
    ReferralContext,
    Signal,
    SignalRules,
    adjacency,
    closes_ring,
    compute_signals,
    find_rings,
)

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
OFFICE_IP = "203.0.113.7"
IPHONE_UA = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) MicroMessenger/8.0.47"
ANDROID_UA = "Mozilla/5.0 (Linux; Android 14; V2309A) MicroMessenger/8.0.49"


def ident(pid: str, **kw: object) -> Identity:
    base: dict[str, object] = {
        "visitor_id": f"v-{pid}",
        "device_id": f"d-{pid}",
        "ip": f"198.51.100.{zlib.crc32(pid.encode()) % 250}",
        "user_agent": IPHONE_UA if pid < "m" else ANDROID_UA,
        "joined_at": T0,
    }
    base.update(kw)
    return Identity(participant_id=pid, **base)  # type: ignore[arg-type]


def ctx(referrer: Identity, referee: Identity, **kw: object) -> ReferralContext:
    base: dict[str, object] = {
        "clicked_at": T0 - timedelta(minutes=3),
        "converted_at": T0,
        "participants_on_device": 1,
    }
    base.update(kw)
    return ReferralContext(referrer=referrer, referee=referee, **base)  # type: ignore[arg-type]


def codes(c: ReferralContext, rules: SignalRules | None = None) -> set[str]:
    return {s.code for s in compute_signals(c, rules)}


def test_clean_referral_has_no_signals_and_is_approved() -> None:
    c = ctx(ident("alice"), ident("zoe", ip="192.0.2.50"))
    decision, assessment = score_referral(c)
    assert assessment.signals == ()
    assert assessment.score == 0
    assert decision == "approved"


def test_self_referral_same_device_is_blocked_under_block_policy() -> None:
    a = ident("alice")
    b = ident(
        "alice2", device_id=a.device_id, visitor_id=a.visitor_id, ip=a.ip, user_agent=a.user_agent
    )
    c = ctx(a, b)
    assert {"same_device", "same_visitor", "same_ip_ua"} <= codes(c)
    block = RiskPolicy(mode="block")
    decision, assessment = score_referral(c, block)
    assert assessment.score >= 80
    assert decision == "blocked"
    # The same referral under a review policy goes to a human instead.
    assert score_referral(c, RiskPolicy(mode="review"))[0] == "held"
    assert score_referral(c, RiskPolicy(mode="allow"))[0] == "approved"


def test_gmail_alias_and_phone_variant_match() -> None:
    a = ident(
        "alice",
        email=normalize_email("alice.wang@gmail.com"),
        phone=normalize_phone("+86 139 1234 5678"),
    )
    b = ident(
        "bob",
        email=normalize_email("alicewang+2@googlemail.com"),
        phone=normalize_phone("0086-139-1234-5678"),
    )
    assert {"same_email", "same_phone"} <= codes(ctx(a, b))


def test_missing_values_are_never_equal() -> None:
    a = Identity("a")
    b = Identity("b")
    assert compute_signals(ReferralContext(referrer=a, referee=b)) == []


@pytest.mark.parametrize("mode", ["review", "block"])
def test_shared_office_ip_alone_never_holds(mode: str) -> None:
    a = ident("alice", ip=OFFICE_IP, user_agent=IPHONE_UA)
    b = ident("zoe", ip=OFFICE_IP, user_agent=ANDROID_UA)
    c = ctx(a, b)
    assert codes(c) == {"same_ip"}
    # Even the strictest allowed policy cannot hold on a shared IP alone.
    strict = RiskPolicy(mode=mode, hold_at=WEAK_ONLY_CAP + 1, block_at=WEAK_ONLY_CAP + 1)  # type: ignore[arg-type]
    decision, assessment = score_referral(c, strict)
    assert assessment.score <= WEAK_ONLY_CAP
    assert decision == "approved"


def test_weak_signals_are_capped_even_if_many() -> None:
    weak = [Signal(f"w{i}", 50, "weak", "", "") for i in range(5)]
    assert combine(weak) == WEAK_ONLY_CAP


def test_policy_rejects_thresholds_that_would_let_ip_alone_hold() -> None:
    with pytest.raises(ValidationError):
        RiskPolicy(hold_at=WEAK_ONLY_CAP)
    with pytest.raises(ValidationError):
        RiskPolicy(hold_at=60, block_at=50)
    with pytest.raises(ValidationError):
        RiskPolicy(mode="nope")  # type: ignore[arg-type]


def test_same_ip_and_distinctive_ua_alone_is_below_a_disposable_mailbox() -> None:
    """Colleagues with the company's phone model share IP and UA: weaker evidence than a
    throwaway mailbox (measured precision, docs/anti-fraud.md), so it scores lower, approves
    alone, and only a second sign sends it to review."""
    a = ident("alice", ip=OFFICE_IP, user_agent=ANDROID_UA)
    b = ident("bob", ip=OFFICE_IP, user_agent=ANDROID_UA)
    decision, assessment = score_referral(ctx(a, b), RiskPolicy(mode="block"))
    (sig,) = assessment.signals
    assert (sig.code, sig.strength, sig.details["distinctive_ua"]) == ("same_ip_ua", "medium", True)
    assert decision == "approved"
    throwaway = ident("zoe", email=normalize_email("x1@mailinator.com"))
    assert assess(ctx(ident("al"), throwaway)).score > assessment.score
    fast = ctx(a, b, clicked_at=T0 - timedelta(seconds=4))
    assert score_referral(fast, RiskPolicy(mode="block"))[0] == "held"


def test_a_farm_cluster_revises_its_first_member() -> None:
    """The first referee of a farm has nothing linking it when it arrives; once two more
    accounts of the same referrer appear on its device it scores as identity evidence."""
    a = ident("alice")
    first = ident("f1", device_id="farm-1", ip="100.64.0.9", user_agent=ANDROID_UA)
    alone = ctx(a, first)
    assert assess(alone).score == 0
    revised = replace(alone, siblings_same_device=2, siblings_same_ip_ua=2)
    decision, assessment = score_referral(revised, RiskPolicy(mode="block"))
    assert [s.code for s in assessment.signals] == ["referee_cluster"]
    assert assessment.signals[0].strength == "strong" and assessment.score >= 70
    assert decision == "held"  # held for review, below block_at on this sign alone
    # One IP + UA shared with one colleague is a weak hint, not a farm.
    office = replace(alone, siblings_same_ip_ua=1, referee=replace(first, device_id="own"))
    assert assess(office).score < RiskPolicy().hold_at


def test_same_ip_and_generic_iphone_ua_alone_does_not_hold() -> None:
    # iPhone WeChat UAs have no device model: colleagues on one Wi-Fi often match exactly.
    a = ident("alice", ip=OFFICE_IP, user_agent=IPHONE_UA)
    b = ident("bob", ip=OFFICE_IP, user_agent=IPHONE_UA)
    decision, assessment = score_referral(ctx(a, b), RiskPolicy(mode="block"))
    (sig,) = assessment.signals
    assert (sig.code, sig.strength) == ("same_ip_ua", "medium")
    assert decision == "approved"
    # …but together with a behavioural sign it goes to review.
    fast = ctx(a, b, clicked_at=T0 - timedelta(seconds=4))
    assert score_referral(fast, RiskPolicy(mode="block"))[0] == "held"


def test_disposable_email() -> None:
    b = ident("zoe", email=normalize_email("xyz123@mailinator.com"))
    signals = compute_signals(ctx(ident("alice"), b))
    assert [s.code for s in signals] == ["disposable_email"]
    assert signals[0].details == {"domain": "mailinator.com"}
    assert "mailinator.com" in signals[0].message_zh


def test_velocity_configurable_and_windowed() -> None:
    a, b = ident("alice"), ident("zoe")
    five_recent = [T0 - timedelta(minutes=m) for m in (5, 10, 20, 30, 50)]
    old = [T0 - timedelta(hours=2, minutes=m) for m in range(10)]
    assert "velocity" in codes(ctx(a, b, referrer_recent_referrals=five_recent))  # 6 > 5
    assert "velocity" not in codes(ctx(a, b, referrer_recent_referrals=five_recent[:4]))  # 5
    assert "velocity" not in codes(ctx(a, b, referrer_recent_referrals=old))
    loose = SignalRules(max_referrals_per_hour=10)
    assert "velocity" not in codes(ctx(a, b, referrer_recent_referrals=five_recent), loose)


def test_velocity_weight_grows_but_is_bounded() -> None:
    a, b = ident("alice"), ident("zoe")
    burst = [T0 - timedelta(seconds=s) for s in range(1, 200)]
    (sig,) = compute_signals(ctx(a, b, referrer_recent_referrals=burst))
    assert sig.code == "velocity" and sig.weight == 35 and sig.details["count"] == 200
    # A burst alone (an honest group owner's post) is flagged but not held.
    assert score_referral(ctx(a, b, referrer_recent_referrals=burst))[0] == "approved"


def test_fast_conversion() -> None:
    a, b = ident("alice"), ident("zoe")
    c = ctx(a, b, clicked_at=T0 - timedelta(seconds=2))
    (sig,) = compute_signals(c)
    assert sig.code == "fast_conversion" and sig.weight == 40
    c = ctx(a, b, clicked_at=T0 - timedelta(seconds=6))
    assert compute_signals(c)[0].weight == 30
    assert codes(ctx(a, b, clicked_at=T0 - timedelta(seconds=10))) == set()
    assert codes(ctx(a, b, clicked_at=None)) == set()


def test_device_crowd() -> None:
    a, b = ident("alice"), ident("zoe")
    assert codes(ctx(a, b, participants_on_device=3)) == set()  # a family tablet
    assert codes(ctx(a, b, participants_on_device=4)) == {"device_crowd"}
    (sig,) = compute_signals(ctx(a, b, participants_on_device=40))
    assert sig.weight == 60


def test_refund_rate_needs_a_sample() -> None:
    a, b = ident("alice"), ident("zoe")
    assert codes(ctx(a, b, referrer_orders=1, referrer_refunded_orders=1)) == set()
    assert codes(ctx(a, b, referrer_orders=8, referrer_refunded_orders=1)) == set()
    (sig,) = compute_signals(ctx(a, b, referrer_orders=8, referrer_refunded_orders=2))
    assert sig.code == "refund_rate" and sig.weight == 30 and sig.details["rate_bp"] == 2500
    (sig,) = compute_signals(ctx(a, b, referrer_orders=8, referrer_refunded_orders=6))
    assert sig.weight == 45


def test_ring_detection() -> None:
    graph = adjacency([("b", "c"), ("c", "d"), ("x", "y")])
    assert closes_ring(graph, "d", "b")  # b→c→d, now d→b
    assert not closes_ring(graph, "a", "b")
    assert not closes_ring(graph, "y", "z")
    a, b = ident("d"), ident("b")
    assert "referral_ring" in codes(ctx(a, b, graph=graph))


def test_find_rings() -> None:
    edges = [("a", "b"), ("b", "c"), ("c", "a"), ("c", "d"), ("e", "f"), ("f", "e"), ("g", "g")]
    assert sorted(find_rings(edges)) == [["a", "b", "c"], ["e", "f"], ["g"]]
    # A long chain (no ring) must not recurse or find anything.
    chain = [(f"n{i}", f"n{i + 1}") for i in range(20_000)]
    assert find_rings(chain) == []
    assert find_rings([*chain, ("n20000", "n0")])[0][0] == "n0"


def test_self_participant() -> None:
    a = ident("alice")
    assert "self_referral" in codes(ctx(a, a))
    assert "referral_ring" not in codes(ctx(a, a))


def test_reasons_are_bilingual_and_sorted_by_weight() -> None:
    a = ident("alice", ip=OFFICE_IP)
    b = ident("zoe", ip=OFFICE_IP, device_id=a.device_id, email="x@yopmail.com")
    assessment = assess(ctx(a, b))
    weights = [s.weight for s in assessment.signals]
    assert weights == sorted(weights, reverse=True)
    for reason in assessment.reasons():
        assert set(reason) == {"code", "weight", "strength", "message", "message_en", "details"}
        assert any("\u4e00" <= ch <= "\u9fff" for ch in reason["message"])
        assert reason["message_en"].isascii()


def test_decide_with_bare_score_never_blocks() -> None:
    policy = RiskPolicy(mode="block")
    assert decide(10, policy) == "approved"
    assert decide(40, policy) == "held"
    assert decide(100, policy) == "held"
    behaviour_only = Assessment(score=95, signals=(Signal("velocity", 95, "medium", "", ""),))
    assert decide(behaviour_only, policy) == "held"


def test_combine_is_monotone_and_bounded() -> None:
    s = [Signal("a", 60, "strong", "", ""), Signal("b", 30, "medium", "", "")]
    assert combine(s[:1]) == 60
    assert combine(s) == 72
    assert combine([Signal("x", 100, "strong", "", "")] * 3) == 100
    assert combine([]) == 0
