"""Campaign configuration shapes, one per campaign type, as a discriminated union on ``type``.

Money is integer 分 and rates are basis points (1 bp = 0.01 %), never floats. Every amount is
bounded: a negative price or a ¥10 billion coupon is a typo, and the API must say so (422)
before anything is written. ``extra="forbid"`` everywhere, so a misspelt key is an error
instead of a silently ignored setting.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator, model_validator

from liebian.campaigns.bargain import BargainRules
from liebian.kit.errors import Invalid
from liebian.risk.scoring import RiskPolicy

# ¥1,000,000 in 分: the ceiling for any single price, reward or budget line.
MAX_AMOUNT = 100_000_000
MAX_BUDGET = 10_000_000_000  # ¥100,000,000 for a whole campaign
MAX_STOCK = 10_000_000
BP_100_PERCENT = 10_000

Amount = Annotated[int, Field(ge=0, le=MAX_AMOUNT, description="integer 分")]
PositiveAmount = Annotated[int, Field(ge=1, le=MAX_AMOUNT, description="integer 分")]
Stock = Annotated[int, Field(ge=1, le=MAX_STOCK)]
HexColor = Annotated[str, Field(pattern=r"^#[0-9a-fA-F]{6}$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Reward(_Strict):
    """One reward line. ``amount`` is 分 for coupon/cash, points for points, units for gift."""

    kind: Literal["coupon", "cash", "points", "gift"]
    name: str = Field(min_length=1, max_length=64)
    amount: int = Field(ge=1, le=MAX_AMOUNT)
    # Coupons: the order total needed to use it (满 X 减 Y), in 分.
    min_order: Amount = 0
    valid_days: int = Field(default=30, ge=1, le=3_650)

    @model_validator(mode="after")
    def _coupon_threshold(self) -> Self:
        if self.kind == "coupon" and self.min_order and self.min_order < self.amount:
            raise ValueError("min_order of a coupon must be at least its amount")
        return self


class InviteTier(_Strict):
    invites: int = Field(ge=1, le=10_000)
    reward: Reward


def _tiers_increasing(tiers: list[InviteTier]) -> list[InviteTier]:
    counts = [t.invites for t in tiers]
    if counts != sorted(set(counts)):
        raise ValueError("tiers must have strictly increasing invite counts")
    return tiers


class InviteConfig(_Strict):
    """邀请裂变 / 任务宝: N qualifying invites unlock tiered rewards."""

    type: Literal["invite"] = "invite"
    tiers: list[InviteTier] = Field(min_length=1, max_length=10)
    # Double-sided referrals convert better; the invitee reward is optional.
    invitee_reward: Reward | None = None
    qualifying_action: Literal["signup", "join_group", "first_purchase", "retained"] = "signup"
    retained_days: int | None = Field(default=None, ge=1, le=90)
    new_users_only: bool = True
    # An invite stops counting if the invitee leaves (deletes the friend / quits the group).
    invalid_on_leave: bool = True
    max_rewards_per_participant: int = Field(default=1, ge=1, le=1_000)
    # Decreasing rewards (递减奖励): each repeat cycle of the tiers pays this many basis points
    # less than the previous one (2000 = 20 % less each time); 0 pays every cycle the same.
    cycle_decrease_bp: int = Field(default=0, ge=0, le=9_000)
    stock: Stock | None = None
    budget: Annotated[int, Field(ge=1, le=MAX_BUDGET)] | None = None
    duration_days: int = Field(default=30, ge=1, le=365)
    # Rewards wait this long after qualifying (refund window) before they are issued.
    reward_delay_days: int = Field(default=0, ge=0, le=90)
    risk: RiskPolicy = Field(default_factory=RiskPolicy)

    _check_tiers = field_validator("tiers")(_tiers_increasing)

    @model_validator(mode="after")
    def _retained_needs_days(self) -> Self:
        if self.qualifying_action == "retained" and self.retained_days is None:
            raise ValueError("retained_days is required when qualifying_action is 'retained'")
        return self


class GroupBuyTier(_Strict):
    size: int = Field(ge=2, le=100)
    price: PositiveAmount


class GroupBuyConfig(_Strict):
    """拼团: a group succeeds when full within the time limit, else it fails and orders void."""

    type: Literal["group_buy"] = "group_buy"
    product_name: str = Field(min_length=1, max_length=64)
    original_price: PositiveAmount
    tiers: list[GroupBuyTier] = Field(min_length=1, max_length=5)
    time_limit_hours: int = Field(default=24, ge=1, le=168)
    # Extra discount for the leader who opens the group (团长优惠), in 分.
    leader_discount: Amount = 0
    purchase_limit: int = Field(default=1, ge=1, le=100)
    # Filling an expiring group with virtual members is allowed by some malls; off by default
    # because it misleads participants.
    fill_with_virtual_members: bool = False
    stock: Stock | None = None
    duration_days: int = Field(default=14, ge=1, le=365)
    risk: RiskPolicy = Field(default_factory=RiskPolicy)

    @model_validator(mode="after")
    def _prices(self) -> Self:
        sizes = [t.size for t in self.tiers]
        if sizes != sorted(set(sizes)):
            raise ValueError("group sizes must be distinct and increasing")
        prices = [t.price for t in self.tiers]
        if any(p >= self.original_price for p in prices):
            raise ValueError("every group price must be below original_price")
        if prices != sorted(prices, reverse=True):
            raise ValueError("a bigger group must not cost more than a smaller one")
        if self.leader_discount >= min(prices):
            raise ValueError("leader_discount must be below the lowest group price")
        return self


class BargainSettings(_Strict):
    start_price: PositiveAmount
    floor_price: Amount = 0
    max_helpers: int = Field(ge=1, le=10_000)
    cut_mode: Literal["fixed", "random"] = "random"
    min_cut: PositiveAmount | None = None
    max_cut: PositiveAmount | None = None

    @model_validator(mode="after")
    def _feasible(self) -> Self:
        try:
            self.rules()
        except Invalid as e:  # re-raised as ValueError so Pydantic reports it as a 422 field
            raise ValueError(e.message) from e
        return self

    def rules(self) -> BargainRules:
        return BargainRules(
            start_price=self.start_price,
            floor_price=self.floor_price,
            max_helpers=self.max_helpers,
            mode=self.cut_mode,
            min_cut=self.min_cut,
            max_cut=self.max_cut,
        )


class AssistConfig(_Strict):
    """助力 (N helpers unlock a reward) or 砍价 (helpers cut a price down to a floor)."""

    type: Literal["assist"] = "assist"
    mode: Literal["unlock", "bargain"] = "unlock"
    helpers_required: int | None = Field(default=None, ge=1, le=10_000)
    reward: Reward | None = None
    bargain: BargainSettings | None = None
    time_limit_hours: int = Field(default=24, ge=1, le=720)
    # One help per helper per activity is always enforced; this caps helps across activities.
    max_helps_per_helper_per_day: int = Field(default=3, ge=1, le=100)
    new_users_only: bool = False
    stock: Stock | None = None
    duration_days: int = Field(default=14, ge=1, le=365)
    risk: RiskPolicy = Field(default_factory=RiskPolicy)

    @model_validator(mode="after")
    def _mode_fields(self) -> Self:
        if self.mode == "unlock":
            if self.helpers_required is None or self.reward is None:
                raise ValueError("unlock mode needs helpers_required and reward")
            if self.bargain is not None:
                raise ValueError("bargain settings apply to bargain mode only")
        else:
            if self.bargain is None:
                raise ValueError("bargain mode needs bargain settings")
            if self.helpers_required is not None:
                raise ValueError("bargain mode uses bargain.max_helpers, not helpers_required")
        return self


class DistributionLevel(_Strict):
    # A single level above 50 % of the sale would pay more for recruiting than for selling.
    rate_bp: int = Field(ge=1, le=5_000)


class DistributionConfig(_Strict):
    """分销: commission on real sales only, at most two levels, no entry fee.

    Chinese law (禁止传销条例) and WeChat's rules forbid pay for recruiting, entry fees and
    multi-level (3+) team commissions; organiser + two paid levels is the ceiling.
    """

    type: Literal["distribution"] = "distribution"
    levels: list[DistributionLevel] = Field(min_length=1)
    binding: Literal["first_touch", "registration", "overwrite"] = "first_touch"
    # How long a binding holds before another referrer can take over (overwrite mode aside).
    lock_days: int = Field(default=30, ge=0, le=365)
    # Commission stays frozen through the refund window, then settles; a refund reverses it.
    freeze_days: int = Field(default=7, ge=0, le=90)
    min_withdrawal: Amount = 1_000
    # Per-product rates: product_id (the purchase event's properties.product_id) → one rate
    # per level, same number of levels as ``levels``; other products use ``levels``.
    product_rates: dict[str, list[DistributionLevel]] = Field(default_factory=dict)
    # Present only to be rejected with a clear message: people do try to send it.
    entry_fee: int = 0
    duration_days: int = Field(default=90, ge=1, le=3_650)
    risk: RiskPolicy = Field(default_factory=RiskPolicy)

    @field_validator("levels")
    @classmethod
    def _two_levels(cls, levels: list[DistributionLevel]) -> list[DistributionLevel]:
        if len(levels) > 2:
            raise ValueError(
                "distribution allows at most 2 commission levels (direct referrer and one "
                "above); a third level is multi-level marketing and is illegal"
            )
        if sum(level.rate_bp for level in levels) > BP_100_PERCENT // 2:
            raise ValueError("total commission across levels must not exceed 5000 bp (50 %)")
        return levels

    @model_validator(mode="after")
    def _product_rates(self) -> Self:
        if len(self.product_rates) > 1_000:
            raise ValueError("product_rates takes at most 1000 products")
        for product_id, levels in self.product_rates.items():
            if not 1 <= len(product_id) <= 128:
                raise ValueError("product ids in product_rates must be 1–128 characters")
            if len(levels) != len(self.levels):
                raise ValueError(
                    f"product_rates[{product_id!r}] needs {len(self.levels)} rate(s), one per level"
                )
            if sum(level.rate_bp for level in levels) > BP_100_PERCENT // 2:
                raise ValueError(
                    f"product_rates[{product_id!r}]: total commission must not exceed 5000 bp (50 %)"
                )
        return self

    @field_validator("entry_fee")
    @classmethod
    def _no_entry_fee(cls, fee: int) -> int:
        if fee != 0:
            raise ValueError(
                "entry fees are not allowed: distributors may not pay to join (forbidden by "
                "law and WeChat's rules)"
            )
        return fee


class PosterConfig(_Strict):
    """海报裂变: each participant gets a poster with their personal QR; scans count as invites."""

    type: Literal["poster"] = "poster"
    width: int = Field(default=750, ge=300, le=2_000)
    height: int = Field(default=1_334, ge=300, le=4_000)
    background_image: str | None = Field(default=None, max_length=500)
    background_color: HexColor = "#FFF4E6"
    # Second colour for a vertical gradient; None means a solid background.
    gradient_to: HexColor | None = "#FFD8A8"
    text_color: HexColor = "#3B2A1A"
    headline: str = Field(min_length=1, max_length=40)
    body: str = Field(default="", max_length=200)
    show_avatar: bool = True
    tiers: list[InviteTier] = Field(min_length=1, max_length=10)
    qualifying_action: Literal["scan", "signup", "join_group"] = "signup"
    new_users_only: bool = True
    stock: Stock | None = None
    duration_days: int = Field(default=14, ge=1, le=365)
    risk: RiskPolicy = Field(default_factory=RiskPolicy)

    _check_tiers = field_validator("tiers")(_tiers_increasing)


CampaignConfig = Annotated[
    InviteConfig | GroupBuyConfig | AssistConfig | DistributionConfig | PosterConfig,
    Field(discriminator="type"),
]
CampaignType = Literal["invite", "group_buy", "assist", "distribution", "poster"]
CAMPAIGN_TYPES: tuple[str, ...] = ("invite", "group_buy", "assist", "distribution", "poster")

_ADAPTER: TypeAdapter[CampaignConfig] = TypeAdapter(CampaignConfig)


def parse_config(campaign_type: str, config: Mapping[str, Any]) -> CampaignConfig:
    """Validate ``config`` for ``campaign_type`` (the API sends the type beside the config).

    Raises ``pydantic.ValidationError`` (the API layer renders it as 422 with field paths).
    """
    data = dict(config)
    if "type" in data and data["type"] != campaign_type:
        raise Invalid(
            f"config.type {data['type']!r} does not match campaign type {campaign_type!r}",
            code="invalid_config",
            details={"field": "config.type"},
        )
    data["type"] = campaign_type
    return _ADAPTER.validate_python(data)


# ── HTTP shapes of the lifecycle, dashboard and tree routes (campaigns/lifecycle_api.py) ──


class LintFinding(BaseModel):
    code: str
    severity: str
    field: str | None
    matched: str
    message: str
    suggestion: str


class CampaignOut(BaseModel):
    id: str
    type: str
    name: str
    status: str
    config: dict[str, Any]
    template: str | None
    share_text: str
    stock_used: int
    budget_used: int
    config_version: int
    starts_at: datetime
    ends_at: datetime | None
    created_at: datetime
    updated_at: datetime
    lint_warnings: list[LintFinding]


class CampaignChangeOut(BaseModel):
    id: str
    action: str
    config_version: int | None
    before: dict[str, Any]
    after: dict[str, Any]
    actor: str | None
    created_at: datetime


class CampaignChangePage(BaseModel):
    items: list[CampaignChangeOut]
    next_cursor: str | None


class DashboardFigures(BaseModel):
    seen: int
    participants: int
    sharers: int
    shares: int
    friend_clicks: int
    friend_joins: int
    friend_conversions: int
    gmv: int = Field(description="分")
    share_rate: float | None
    click_rate: float | None
    conversion_rate_per_share: float | None
    conversion_rate_per_click: float | None
    k_factor: float | None


class DashboardTotals(DashboardFigures):
    reward_cost: int = Field(description="分: coupon and cash rewards not reversed")
    roi: float | None
    cac: int | None = Field(description="分 of reward cost per friend brought in")


class FunnelStep(BaseModel):
    key: str
    label: str
    people: int
    rate_from_previous: float | None


class ChannelFigures(DashboardFigures):
    channel: str


class DayFigures(DashboardFigures):
    day: str


class CompareFigures(DashboardTotals):
    campaign_id: str
    name: str
    starts_at: datetime
    status: str
    current: bool = Field(description="this campaign (the others are earlier, same type)")


class DashboardOut(BaseModel):
    campaign_id: str
    tz: str
    totals: DashboardTotals
    funnel: list[FunnelStep]
    by_channel: list[ChannelFigures]
    by_day: list[DayFigures]
    compare: list[CompareFigures] = Field(
        description="this campaign and the workspace's latest 5 earlier campaigns of the same "
        "type, with the same definitions"
    )


class TreeNode(BaseModel):
    participant_id: str
    external_id: str | None
    nickname: str
    channel: str | None
    joined_at: datetime
    depth: int
    children: int
    descendants: int
    referral_status: str | None


class TreeOut(BaseModel):
    campaign_id: str
    parent: str | None
    participants: int
    max_depth: int
    widest: list[TreeNode]
    items: list[TreeNode]
    next_cursor: str | None


# ── HTTP shapes of campaigns/api.py (templates, participants, referrals, groups, assists) ──


class CampaignPage(BaseModel):
    items: list[CampaignOut]
    next_cursor: str | None = None


class TemplateOut(BaseModel):
    key: str
    industry: str
    type: str
    name: str
    description: str
    share_text: str
    channel: str
    config: dict[str, Any]


class TemplateList(BaseModel):
    items: list[TemplateOut]


class ParticipantOut(BaseModel):
    participant_id: str
    campaign_id: str
    invite_code: str
    invite_url: str = Field(description="the participant's invite link (share this)")
    poster_url: str = Field(description="the participant's poster (PNG), relative to the API")
    referrer_participant_id: str | None
    joined_at: datetime


class ParticipantDetail(ParticipantOut):
    external_id: str | None
    qualified_invites: int = Field(description="invites that count toward the tiers")
    next_tier_invites: int | None = Field(description="invites the next tier needs, if any")


class LeaderboardRow(BaseModel):
    rank: int
    participant_id: str
    invites: int
    external_id: str | None
    nickname: str | None = Field(description="masked for display")


class LeaderboardOut(BaseModel):
    items: list[LeaderboardRow]


class ReferralParty(BaseModel):
    external_id: str | None
    participant_id: str


class ReferralOut(BaseModel):
    id: str
    campaign_id: str
    referrer: ReferralParty
    referee: ReferralParty
    status: str
    risk_score: int
    risk_reasons: list[Any]
    review_status: str = Field(description="none, pending, approved or rejected")
    qualified: bool
    qualified_at: datetime | None
    invalidated_at: datetime | None
    created_at: datetime


class ReferralPage(BaseModel):
    items: list[ReferralOut]
    next_cursor: str | None = None


class ReferralList(BaseModel):
    items: list[ReferralOut]


class GroupMemberOut(BaseModel):
    external_id: str | None
    is_leader: bool
    seat: int
    price: int = Field(description="integer 分")
    order_status: str
    joined_at: datetime


class GroupOut(BaseModel):
    group_id: str
    campaign_id: str
    status: str = Field(description="open, success or failed")
    size: int
    price: int = Field(description="group price, integer 分")
    member_count: int
    expires_at: datetime
    share_url: str
    members: list[GroupMemberOut]


class AssistHelperOut(BaseModel):
    external_id: str | None
    index: int
    cut: int | None = Field(description="integer 分 cut by this help (bargain)")
    price_after: int | None
    helped_at: datetime


class AssistOut(BaseModel):
    assist_id: str
    campaign_id: str
    owner_external_id: str | None
    mode: str
    status: str = Field(description="open, unlocked or expired")
    unlocked: bool
    helpers_count: int
    helpers_required: int
    price_now: int | None
    expires_at: datetime
    share_url: str
    helpers: list[AssistHelperOut]


class HelpOut(AssistOut):
    cut: int | None = Field(description="what this help cut, integer 分")
    helper_index: int | None = Field(description="which help this was (0 = first)")


class GraphStatsOut(BaseModel):
    participants: int
    referrals: int
    k_factor: float
    max_depth: int
    median_cycle_seconds: float | None
    referrers: int
