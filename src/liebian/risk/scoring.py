"""Risk score and decision for one referral.

Signals combine like independent pieces of evidence (noisy-OR): ``score = 100·(1 − Π(1 − wᵢ/100))``.
Two medium signals make more than either alone, but nothing exceeds 100 and no single
signal is double-counted by adding up past the scale.

Two structural guarantees, independent of the configured thresholds:
- weak-only evidence (a shared IP) is capped at ``WEAK_ONLY_CAP``, and policies cannot set a
  hold threshold at or below that cap, so a shared office IP alone never holds or blocks;
- automatic blocking needs at least one *strong* (identity) signal; behaviour alone, however
  high it scores, goes to a human as "held".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from liebian.risk.signals import ReferralContext, Signal, SignalRules, compute_signals

Decision = Literal["approved", "held", "blocked"]
PolicyMode = Literal["allow", "review", "block"]

WEAK_ONLY_CAP = 15


class RiskPolicy(BaseModel):
    """Per-campaign anti-fraud policy.

    - ``allow``: score and record reasons, never stop anything (for trusted audiences);
    - ``review``: hold referrals at or above ``hold_at`` for a human, never block automatically;
    - ``block``: hold at ``hold_at``, block at ``block_at`` when identity evidence is present.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    mode: PolicyMode = "review"
    hold_at: int = Field(default=40, ge=WEAK_ONLY_CAP + 1, le=100)
    block_at: int = Field(default=80, ge=WEAK_ONLY_CAP + 1, le=100)
    rules: SignalRules = Field(default_factory=SignalRules)

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.block_at < self.hold_at:
            raise ValueError("block_at must be greater than or equal to hold_at")
        return self


@dataclass(frozen=True, slots=True)
class Assessment:
    score: int  # 0..100
    signals: tuple[Signal, ...]

    @property
    def has_strong(self) -> bool:
        return any(s.strength == "strong" for s in self.signals)

    def reasons(self) -> list[dict[str, Any]]:
        return [s.as_reason() for s in self.signals]


def combine(signals: tuple[Signal, ...] | list[Signal]) -> int:
    """Noisy-OR of the weights, with weak-only evidence capped (see module docstring)."""
    remaining = 1.0
    for s in signals:
        remaining *= 1.0 - min(max(s.weight, 0), 100) / 100.0
    score = round(100 * (1.0 - remaining))
    if signals and all(s.strength == "weak" for s in signals):
        score = min(score, WEAK_ONLY_CAP)
    return max(0, min(100, score))


def assess(ctx: ReferralContext, policy: RiskPolicy | None = None) -> Assessment:
    """Compute signals for ``ctx`` under ``policy``'s rules and combine them into a score."""
    policy = policy or RiskPolicy()
    signals = tuple(compute_signals(ctx, policy.rules))
    return Assessment(score=combine(signals), signals=signals)


def decide(assessment: Assessment | int, policy: RiskPolicy | None = None) -> Decision:
    """Map a score (or a full assessment) to approved | held | blocked under ``policy``.

    Given a bare score, the "blocking needs identity evidence" guarantee cannot be checked, so
    a bare score at ``block_at`` is only ``held``; pass the ``Assessment`` to allow blocking.
    """
    policy = policy or RiskPolicy()
    if isinstance(assessment, Assessment):
        score, strong = assessment.score, assessment.has_strong
    else:
        score, strong = int(assessment), False
    if policy.mode == "allow" or score < policy.hold_at:
        return "approved"
    if policy.mode == "block" and score >= policy.block_at and strong:
        return "blocked"
    return "held"


def score_referral(
    ctx: ReferralContext, policy: RiskPolicy | None = None
) -> tuple[Decision, Assessment]:
    """Convenience for the service layer: assess and decide in one call."""
    policy = policy or RiskPolicy()
    assessment = assess(ctx, policy)
    return decide(assessment, policy), assessment
