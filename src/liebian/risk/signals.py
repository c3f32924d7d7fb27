"""Fraud signals for one referral, computed from plain values.

Nothing here touches storage: the service layer gathers a ``ReferralContext`` (identities of
referrer and referee, a few counters and the referral graph) and gets back a list of
``Signal`` objects, each with a weight, a strength and a reason a human can read in the review
queue. ``liebian.risk.scoring`` turns the signals into a score and a decision.

Strength matters as much as weight:
- *strong* signals are identity evidence (same device, same mailbox, same phone, a ring);
- *medium* signals are behaviour (bursts, instant conversions, disposable mail, refunds);
- *weak* signals are circumstantial (same IP alone: offices, schools, carrier NAT and
  families put many honest people behind one address). Weak signals alone can never hold or
  block anyone — scoring caps them below every allowed threshold.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from liebian.risk.normalize import email_domain, is_disposable_email

Strength = Literal["strong", "medium", "weak"]


@dataclass(frozen=True, slots=True)
class Identity:
    """What we know about one participant at the moment of the referral.

    ``email`` and ``phone`` must already be normalized (``liebian.risk.normalize``), so that
    equality here means "same mailbox / same handset".
    """

    participant_id: str
    visitor_id: str | None = None
    device_id: str | None = None  # device fingerprint
    ip: str | None = None
    user_agent: str | None = None
    email: str | None = None
    phone: str | None = None
    joined_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ReferralContext:
    """Everything the signals look at for one referral ``referrer → referee``."""

    referrer: Identity
    referee: Identity
    # When the referee clicked the invite link and when they completed the qualifying action.
    clicked_at: datetime | None = None
    converted_at: datetime | None = None
    # Times of the referrer's *other* referrals (this one excluded); only the last hour or so
    # matters, older entries are ignored.
    referrer_recent_referrals: Sequence[datetime] = ()
    # Distinct participants seen on the referee's device so far, the referee included.
    participants_on_device: int = 0
    # Existing referral edges as adjacency: participant id → ids they referred. May span
    # campaigns of the workspace; rings usually close across campaigns.
    graph: Mapping[str, Collection[str]] = field(default_factory=dict)
    # Referrer's order history, for the refund-rate signal.
    referrer_orders: int = 0
    referrer_refunded_orders: int = 0
    # The referrer's *other* referees that share this referee's device, or its IP and user
    # agent: a farm of several accounts on one handset or behind one emulator image. Counted
    # when the referral arrives and again whenever a later referral joins the cluster, so the
    # first member of a farm is re-scored once the second one shows up (decision 0019).
    siblings_same_device: int = 0
    siblings_same_ip_ua: int = 0


class SignalRules(BaseModel):
    """Tunable thresholds, stored per campaign inside its risk policy."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_referrals_per_hour: int = Field(default=5, ge=1, le=10_000)
    min_seconds_click_to_convert: int = Field(default=10, ge=0, le=3_600)
    max_participants_per_device: int = Field(default=3, ge=1, le=1_000)
    refund_rate_threshold_bp: int = Field(default=2_500, ge=1, le=10_000)
    # Below this many orders one refund would read as 100 %: not evidence of anything.
    min_orders_for_refund_rate: int = Field(default=4, ge=1, le=10_000)


@dataclass(frozen=True, slots=True)
class Signal:
    code: str
    weight: int  # contribution 0..100 before combination
    strength: Strength
    message_zh: str
    message_en: str
    details: dict[str, Any] = field(default_factory=dict)

    def as_reason(self) -> dict[str, Any]:
        """Shape stored as ``risk_reasons`` on a referral and shown in the review queue."""
        return {
            "code": self.code,
            "weight": self.weight,
            "strength": self.strength,
            "message": self.message_zh,
            "message_en": self.message_en,
            "details": self.details,
        }


def signal_from_reason(reason: dict[str, Any]) -> Signal:
    """A stored reason (``Signal.as_reason``) back as the signal it was."""
    return Signal(
        code=str(reason.get("code", "")),
        weight=int(reason.get("weight", 0)),
        strength=reason.get("strength", "weak"),
        message_zh=str(reason.get("message", "")),
        message_en=str(reason.get("message_en", "")),
        details=dict(reason.get("details") or {}),
    )


# Base weights. Identity evidence is high, behaviour medium, shared IP low. The numbers were
# tuned on the seeded population in liebian.risk.population (see docs/anti-fraud.md).
W_SELF = 100
W_SAME_VISITOR = 65
W_SAME_DEVICE = 60
W_SAME_EMAIL = 75
W_SAME_PHONE = 75
# Same IP + UA is common among honest colleagues with the company's phone model: measured
# precision 0.2–0.3 on the generated mixtures (bench/bench_fraud.py), below a disposable
# mailbox (1.0), so it weighs less than one and is medium evidence, not identity.
W_SAME_IP_UA = 25
# iPhone WeChat UAs carry no device model, only iOS and WeChat versions, so colleagues and
# family members on the same Wi-Fi often share one exactly; the pair is weaker evidence there.
W_SAME_IP_GENERIC_UA = 15
W_RING = 55
W_SAME_IP = 10
W_DISPOSABLE = 45
W_VELOCITY = 25
# Below the default hold threshold on purpose: an honest group owner's post brings dozens of
# sign-ups in an hour. A burst is held when it comes with another sign (instant conversions,
# disposable mail, one device).
W_VELOCITY_MAX = 35
W_FAST = 30
W_FAST_BOT = 40
W_DEVICE_CROWD = 35
W_DEVICE_CROWD_MAX = 60
W_REFUNDS = 30
W_REFUNDS_HIGH = 45

# Referee clusters (several referees of one referrer on one device / IP + UA).
W_CLUSTER_DEVICE = 55
W_CLUSTER_DEVICE_MANY = 70
W_CLUSTER_IP_UA = 25
W_CLUSTER_IP_UA_MANY = 40
W_CLUSTER_IP_GENERIC_UA = 10
W_CLUSTER_IP_GENERIC_UA_MANY = 20

# Searching for a ring is a graph walk on every referral; bound it so a huge graph cannot make
# one join slow. Fraud rings are small; a walk this large is already suspicious-free territory.
RING_SEARCH_MAX_NODES = 5_000


def compute_signals(ctx: ReferralContext, rules: SignalRules | None = None) -> list[Signal]:
    """All signals that fire for ``ctx``, strongest first."""
    rules = rules or SignalRules()
    a, b = ctx.referrer, ctx.referee
    out: list[Signal] = []

    if a.participant_id == b.participant_id:
        out.append(
            Signal(
                "self_referral",
                W_SELF,
                "strong",
                "推荐人与被推荐人是同一参与者",
                "Referrer and referee are the same participant",
            )
        )
    if _same(a.visitor_id, b.visitor_id):
        out.append(
            Signal(
                "same_visitor",
                W_SAME_VISITOR,
                "strong",
                "与推荐人使用同一访客标识（同一浏览器）",
                "Same visitor id as the referrer (same browser)",
            )
        )
    if _same(a.device_id, b.device_id):
        out.append(
            Signal(
                "same_device",
                W_SAME_DEVICE,
                "strong",
                "与推荐人使用同一设备",
                "Same device fingerprint as the referrer",
            )
        )
    if _same(a.email, b.email):
        out.append(
            Signal(
                "same_email",
                W_SAME_EMAIL,
                "strong",
                "邮箱与推荐人相同（已忽略大小写、点号和+后缀）",
                "Same mailbox as the referrer (case, dots and +tags ignored)",
            )
        )
    if _same(a.phone, b.phone):
        out.append(
            Signal(
                "same_phone",
                W_SAME_PHONE,
                "strong",
                "手机号与推荐人相同",
                "Same phone number as the referrer",
            )
        )
    if _same(a.ip, b.ip):
        if _same(a.user_agent, b.user_agent):
            distinctive = ua_is_distinctive(b.user_agent or "")
            out.append(
                Signal(
                    "same_ip_ua",
                    W_SAME_IP_UA if distinctive else W_SAME_IP_GENERIC_UA,
                    "medium",
                    "与推荐人 IP 和浏览器标识完全相同",
                    "Same IP address and user agent as the referrer",
                    {"ip": b.ip, "distinctive_ua": distinctive},
                )
            )
        else:
            # Offices, campuses, carrier NAT, families: many honest people share an IP.
            out.append(
                Signal(
                    "same_ip",
                    W_SAME_IP,
                    "weak",
                    "与推荐人 IP 相同（可能是同一办公室或家庭网络）",
                    "Same IP as the referrer (could be a shared office or home network)",
                    {"ip": b.ip},
                )
            )
    if b.email is not None and is_disposable_email(b.email):
        domain = email_domain(b.email)
        out.append(
            Signal(
                "disposable_email",
                W_DISPOSABLE,
                "medium",
                f"使用一次性邮箱（{domain}）",
                f"Disposable email domain ({domain})",
                {"domain": domain},
            )
        )

    velocity = _velocity_signal(ctx, rules)
    if velocity:
        out.append(velocity)
    fast = _fast_conversion_signal(ctx, rules)
    if fast:
        out.append(fast)
    crowd = _device_crowd_signal(ctx, rules)
    if crowd:
        out.append(crowd)
    if a.participant_id != b.participant_id and closes_ring(
        ctx.graph, a.participant_id, b.participant_id
    ):
        out.append(
            Signal(
                "referral_ring",
                W_RING,
                "strong",
                "推荐关系形成闭环（互相邀请）",
                "Referral closes a ring in the referral graph (mutual invitations)",
            )
        )
    refunds = _refund_signal(ctx, rules)
    if refunds:
        out.append(refunds)
    cluster = cluster_signal(ctx)
    if cluster:
        out.append(cluster)

    out.sort(key=lambda s: (-s.weight, s.code))
    return out


def ua_is_distinctive(user_agent: str) -> bool:
    """False for user agents shared by large groups of devices (iOS: no model in the UA)."""
    return not any(token in user_agent for token in ("iPhone", "iPad", "iPod"))


def _same(x: str | None, y: str | None) -> bool:
    # Unknown is never evidence: two missing values are not "the same".
    return bool(x) and x == y


def _velocity_signal(ctx: ReferralContext, rules: SignalRules) -> Signal | None:
    now = ctx.referee.joined_at or ctx.converted_at
    if now is None:
        return None
    window_start = now - timedelta(hours=1)
    # +1: the referral being scored is part of the burst.
    count = 1 + sum(1 for t in ctx.referrer_recent_referrals if window_start <= t <= now)
    limit = rules.max_referrals_per_hour
    if count <= limit:
        return None
    weight = min(W_VELOCITY_MAX, W_VELOCITY + 3 * (count - limit - 1))
    return Signal(
        "velocity",
        weight,
        "medium",
        f"推荐人一小时内推荐了 {count} 人（上限 {limit}）",
        f"Referrer made {count} referrals within an hour (limit {limit})",
        {"count": count, "limit": limit},
    )


def _fast_conversion_signal(ctx: ReferralContext, rules: SignalRules) -> Signal | None:
    if ctx.clicked_at is None or ctx.converted_at is None:
        return None
    seconds = (ctx.converted_at - ctx.clicked_at).total_seconds()
    limit = rules.min_seconds_click_to_convert
    if seconds >= limit:
        return None
    # Under 3 s nobody reads a page and fills a form: that is a script.
    weight = W_FAST_BOT if seconds < 3 else W_FAST
    return Signal(
        "fast_conversion",
        weight,
        "medium",
        f"从点击到完成仅用了 {seconds:.0f} 秒（少于 {limit} 秒）",
        f"Converted {seconds:.0f} s after the click (under {limit} s)",
        {"seconds": round(seconds, 1), "limit": limit},
    )


def _device_crowd_signal(ctx: ReferralContext, rules: SignalRules) -> Signal | None:
    count = ctx.participants_on_device
    limit = rules.max_participants_per_device
    if count <= limit:
        return None
    weight = min(W_DEVICE_CROWD_MAX, W_DEVICE_CROWD + 5 * (count - limit - 1))
    return Signal(
        "device_crowd",
        weight,
        "medium",
        f"同一设备上已有 {count} 个参与者（上限 {limit}）",
        f"{count} participants on the same device (limit {limit})",
        {"count": count, "limit": limit},
    )


def _refund_signal(ctx: ReferralContext, rules: SignalRules) -> Signal | None:
    orders, refunded = ctx.referrer_orders, ctx.referrer_refunded_orders
    if orders < rules.min_orders_for_refund_rate or orders <= 0:
        return None
    rate_bp = refunded * 10_000 // orders
    if rate_bp < rules.refund_rate_threshold_bp:
        return None
    weight = W_REFUNDS_HIGH if rate_bp >= 5_000 else W_REFUNDS
    pct = rate_bp / 100
    return Signal(
        "refund_rate",
        weight,
        "medium",
        f"推荐人退款率 {pct:.0f}%（{refunded}/{orders} 单）",
        f"Referrer refund rate {pct:.0f}% ({refunded}/{orders} orders)",
        {"rate_bp": rate_bp, "orders": orders, "refunded": refunded},
    )


def cluster_signal(ctx: ReferralContext) -> Signal | None:
    """Several referees of one referrer on one device, or behind one IP with one user agent.

    One device is identity evidence (accounts on the same handset); one IP + UA is, when the UA
    names a device model, nearly as good — colleagues on one office IP have their own phones
    and rarely the same model *and* WeChat build. iPhone UAs name no model: weaker there.
    """
    a, b = ctx.referrer, ctx.referee
    # On the referrer's own device / connection ``same_device`` / ``same_ip_ua`` already speak
    # (relatives on the family phone): the cluster is about *other* places referees gather.
    devices = ctx.siblings_same_device if b.device_id and not _same(a.device_id, b.device_id) else 0
    if devices >= 1:
        weight = W_CLUSTER_DEVICE if devices == 1 else W_CLUSTER_DEVICE_MANY
        return Signal(
            "referee_cluster",
            weight,
            "strong",
            f"推荐人的另外 {devices} 位被推荐人与其使用同一设备",
            f"{devices} other referee(s) of this referrer on the same device",
            {"by": "device", "others": devices},
        )
    own_connection = _same(a.ip, b.ip) and _same(a.user_agent, b.user_agent)
    others = ctx.siblings_same_ip_ua if b.ip and b.user_agent and not own_connection else 0
    if others >= 1:
        distinctive = ua_is_distinctive(b.user_agent or "")
        if distinctive:
            weight = W_CLUSTER_IP_UA if others == 1 else W_CLUSTER_IP_UA_MANY
        else:
            weight = W_CLUSTER_IP_GENERIC_UA if others == 1 else W_CLUSTER_IP_GENERIC_UA_MANY
        return Signal(
            "referee_cluster",
            weight,
            "medium",
            f"推荐人的另外 {others} 位被推荐人与其 IP 和浏览器标识完全相同",
            f"{others} other referee(s) of this referrer with the same IP and user agent",
            {"by": "ip_ua", "others": others, "distinctive_ua": distinctive},
        )
    return None


def closes_ring(graph: Mapping[str, Collection[str]], referrer: str, referee: str) -> bool:
    """True when adding ``referrer → referee`` closes a directed cycle.

    That is: ``referee`` already reaches ``referrer`` through existing edges (B invited C who
    invited A, and now A invites B). Breadth-first, bounded by ``RING_SEARCH_MAX_NODES``.
    """
    if referee not in graph:
        return False
    seen = {referee}
    queue = deque([referee])
    while queue:
        node = queue.popleft()
        for nxt in graph.get(node, ()):
            if nxt == referrer:
                return True
            if nxt not in seen:
                if len(seen) >= RING_SEARCH_MAX_NODES:
                    return False
                seen.add(nxt)
                queue.append(nxt)
    return False


def adjacency(edges: Iterable[tuple[str, str]]) -> dict[str, set[str]]:
    """Build the ``graph`` mapping of ``ReferralContext`` from ``(referrer, referee)`` pairs."""
    graph: dict[str, set[str]] = {}
    for src, dst in edges:
        graph.setdefault(src, set()).add(dst)
    return graph


def find_rings(edges: Iterable[tuple[str, str]]) -> list[list[str]]:
    """Strongly connected components of size ≥ 2 (plus self-loops): the referral rings.

    For a periodic sweep over a campaign's or workspace's whole graph: online scoring only
    sees the edge that *closes* a ring, the sweep finds every member. Iterative Tarjan, so a
    long chain cannot hit the recursion limit.
    """
    graph = adjacency(edges)
    nodes: set[str] = set(graph)
    for targets in graph.values():
        nodes |= targets
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    rings: list[list[str]] = []
    counter = 0
    for root in sorted(nodes):
        if root in index:
            continue
        work: list[tuple[str, Iterable[str]]] = [(root, iter(sorted(graph.get(root, ()))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component: list[str] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1 or node in graph.get(node, ()):
                    rings.append(sorted(component))
    return rings
