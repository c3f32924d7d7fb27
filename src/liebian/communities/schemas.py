"""Pydantic in/out for communities. Inputs are strict (unknown fields are a 422)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import Field

from liebian.kit.schemas import OutModel, StrictModel

Kind = Literal["acquisition", "welfare", "flash"]
Threshold = Literal["open", "invitation", "activity", "purchase", "screening"]
Platform = Literal["wechat", "wecom"]
GroupStatus = Literal["open", "full", "archived"]
QuestionType = Literal["single", "multiple", "text", "date"]
LadderAction = Literal["warn", "mute", "remove"]
Key = Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_\-]+$")


class AgeRange(StrictModel):
    """A tier computed from a date answer: months since that date in [min_months, max_months).
    A due date in the future gives negative months (孕期)."""

    question: str = Field(min_length=1, max_length=32)
    min_months: int = Field(ge=-12, le=1200)
    max_months: int = Field(ge=-12, le=1200)


class TierIn(StrictModel):
    key: str = Key
    name: str = Field(min_length=1, max_length=50)
    age: AgeRange | None = None


class QuestionIn(StrictModel):
    key: str = Key
    label: str = Field(min_length=1, max_length=200)
    type: QuestionType
    options: list[str] = Field(default_factory=list, max_length=50)
    required: bool = True
    # The contact custom attribute the answer is stored in (defined beforehand).
    attribute: str | None = Field(default=None, max_length=64)
    # option → tag id: choosing the option tags the contact.
    tags: dict[str, str] = Field(default_factory=dict)


class RoutingRuleIn(StrictModel):
    """Answer of ``question`` is (or, for multiple choice, includes) one of ``values`` → tier."""

    question: str = Field(min_length=1, max_length=32)
    values: list[str] = Field(min_length=1, max_length=50)
    tier: str = Field(min_length=1, max_length=32)


class LadderStep(StrictModel):
    at: int = Field(ge=1, le=100, description="the member's nth violation")
    action: LadderAction
    mute_hours: int | None = Field(default=None, ge=1, le=24 * 30)


class RulesIn(StrictModel):
    banned_keywords: list[str] = Field(default_factory=list, max_length=1000)
    banned_patterns: list[str] = Field(default_factory=list, max_length=500)
    block_links: bool = False
    block_contact_details: bool = False
    flood_per_minute: int | None = Field(default=None, ge=1, le=1000)
    alert_keywords: list[str] = Field(default_factory=list, max_length=500)
    ladder: list[LadderStep] = Field(
        default_factory=lambda: [
            LadderStep(at=1, action="warn"),
            LadderStep(at=2, action="mute", mute_hours=24),
            LadderStep(at=3, action="remove"),
        ]
    )


class ThresholdConfig(StrictModel):
    campaign_id: str | None = None  # activity: joined this campaign
    min_orders: int = Field(default=1, ge=1, le=1000)  # purchase


class FirstDayTask(StrictModel):
    """首日任务: a link shown after the join (填资料 / 领新人券 / 签到); a tap within the first
    day is recorded for the member (event ``first_day_task``) and opens ``url``."""

    key: str = Key
    label: str = Field(min_length=1, max_length=20)
    url: str = Field(min_length=8, max_length=2000, pattern=r"^https?://")


class CommunityCreate(StrictModel):
    name: str = Field(min_length=1, max_length=100)
    description: str = Field(default="", max_length=1000)
    kind: Kind = "acquisition"
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    threshold: Threshold = "open"
    threshold_config: ThresholdConfig = Field(default_factory=ThresholdConfig)
    tiers: list[TierIn] = Field(default_factory=list, max_length=50)
    screening: list[QuestionIn] = Field(default_factory=list, max_length=30)
    routing: list[RoutingRuleIn] = Field(default_factory=list, max_length=200)
    rules: RulesIn = Field(default_factory=RulesIn)
    welcome_template: str = Field(default="", max_length=2000)
    announcement_template: str = Field(default="", max_length=4000)
    first_day_tasks: list[FirstDayTask] = Field(default_factory=list, max_length=5)
    channel_id: str | None = Field(default=None, max_length=40)
    alert_below: int = Field(default=20, ge=0, le=100000)


class CommunityUpdate(StrictModel):
    name: str | None = Field(default=None, min_length=1, max_length=100)
    description: str | None = Field(default=None, max_length=1000)
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    threshold: Threshold | None = None
    threshold_config: ThresholdConfig | None = None
    tiers: list[TierIn] | None = Field(default=None, max_length=50)
    screening: list[QuestionIn] | None = Field(default=None, max_length=30)
    routing: list[RoutingRuleIn] | None = Field(default=None, max_length=200)
    rules: RulesIn | None = None
    welcome_template: str | None = Field(default=None, max_length=2000)
    announcement_template: str | None = Field(default=None, max_length=4000)
    first_day_tasks: list[FirstDayTask] | None = Field(default=None, max_length=5)
    channel_id: str | None = Field(default=None, max_length=40)
    alert_below: int | None = Field(default=None, ge=0, le=100000)
    status: Literal["active", "archived"] | None = None


class TierPlaces(OutModel):
    tier: str | None
    groups_open: int
    places_left: int


class CommunityOut(OutModel):
    id: str
    name: str
    description: str
    kind: str
    starts_at: datetime | None
    ends_at: datetime | None
    threshold: str
    threshold_config: dict[str, Any]
    tiers: list[dict[str, Any]]
    screening: list[dict[str, Any]]
    routing: list[dict[str, Any]]
    rules: dict[str, Any]
    welcome_template: str
    announcement_template: str
    first_day_tasks: list[dict[str, Any]] = Field(default_factory=list)
    channel_id: str | None
    alert_below: int
    status: str
    entry_url: str
    places: list[TierPlaces] = Field(default_factory=list)
    created_at: datetime


class GroupCreate(StrictModel):
    name: str = Field(min_length=1, max_length=100)
    platform: Platform = "wechat"
    owner: str = Field(default="", max_length=64)
    owner_wecom_userid: str | None = Field(
        default=None, pattern=r"^[A-Za-z0-9_\-.@]{1,64}$",
        description="the owner's WeCom userid (a WeCom customer group): the sender of the"
        " group mass posts the owner confirms in WeCom",
    )  # fmt: skip
    capacity: int | None = Field(default=None, ge=1, le=2000)
    tier: str | None = Field(default=None, max_length=32)
    qr_image: str | None = Field(
        default=None, max_length=400_000, description="data:image/png;base64,…"
    )
    join_url: str | None = Field(default=None, max_length=500)
    chat_id: str | None = Field(default=None, max_length=128)
    bot_channel_id: str | None = Field(
        default=None, max_length=40,
        description="the group's bot: a webhook or wecom_robot channel the content calendar"
        " posts through (none: the owner gets a task)",
    )  # fmt: skip


class GroupUpdate(StrictModel):
    name: str | None = Field(default=None, min_length=1, max_length=100)
    owner: str | None = Field(default=None, max_length=64)
    owner_wecom_userid: str | None = Field(
        default=None, pattern=r"^[A-Za-z0-9_\-.@]{1,64}$",
        description="the owner's WeCom userid (a WeCom customer group): the sender of the"
        " group mass posts the owner confirms in WeCom",
    )  # fmt: skip
    capacity: int | None = Field(default=None, ge=1, le=2000)
    tier: str | None = Field(default=None, max_length=32)
    status: GroupStatus | None = None
    qr_image: str | None = Field(
        default=None, max_length=400_000, description="data:image/png;base64,…"
    )
    join_url: str | None = Field(default=None, max_length=500)
    chat_id: str | None = Field(default=None, max_length=128)
    bot_channel_id: str | None = Field(
        default=None, max_length=40,
        description="the group's bot: a webhook or wecom_robot channel the content calendar"
        " posts through (none: the owner gets a task)",
    )  # fmt: skip


class GroupOut(OutModel):
    id: str
    community_id: str
    name: str
    platform: str
    owner: str
    capacity: int
    tier: str | None
    status: str
    members: int
    join_url: str | None
    has_qr: bool
    chat_id: str | None
    bot_channel_id: str | None = None
    owner_wecom_userid: str | None = None
    created_at: datetime


class MemberIn(StrictModel):
    """Record a join or leave the API caller saw (a bot, a CRM)."""

    external_id: str = Field(min_length=1, max_length=128)
    event: Literal["joined", "left"] = "joined"
    inviter_code: str | None = Field(default=None, max_length=16)


class MemberOut(OutModel):
    id: str
    group_id: str
    contact_id: str | None
    status: str
    scene: str
    tier: str | None
    answers: dict[str, Any]
    invite_code: str
    inviter_member_id: str | None
    muted_until: datetime | None
    routed_at: datetime
    joined_at: datetime | None
    left_at: datetime | None


class AlertOut(OutModel):
    id: str
    community_id: str
    group_id: str | None
    kind: str
    message: str
    details: dict[str, Any]
    created_at: datetime


class TierMoveOut(OutModel):
    member_id: str
    contact_id: str | None
    group_id: str
    from_tier: str | None
    to_tier: str
    as_of: date
    task_id: str | None = None


class MessageIn(StrictModel):
    """One group message as the brand's bot or WeCom's archive forwards it."""

    message_id: str = Field(min_length=1, max_length=128)
    group_id: str | None = Field(default=None, max_length=40)
    chat_id: str | None = Field(default=None, max_length=128)
    # Who sent it: the brand's user id, or a WeCom external_userid.
    external_id: str | None = Field(default=None, max_length=128)
    wecom_userid: str | None = Field(default=None, max_length=128)
    text: str = Field(max_length=5000)
    sent_at: datetime | None = None


class MessagesIn(StrictModel):
    messages: list[MessageIn] = Field(min_length=1, max_length=500)


class ViolationOut(OutModel):
    id: str
    group_id: str
    contact_id: str | None
    sender: str
    message_id: str
    text: str
    rule: str
    step: int
    action: str
    task_id: str | None
    created_at: datetime


class MessageResult(OutModel):
    message_id: str
    group_id: str
    duplicate: bool = False
    violation: ViolationOut | None = None
    alert_words: list[str] = Field(default_factory=list)


class MessagesOut(OutModel):
    results: list[MessageResult]


class AnnounceIn(StrictModel):
    idempotency_key: str = Field(min_length=1, max_length=100)


class SendOut(OutModel):
    send_id: str
    status: str
    reason: str | None = None
    task_id: str | None = None


class PreviewIn(StrictModel):
    external_id: str | None = Field(default=None, max_length=128)
    welcome_template: str | None = Field(default=None, max_length=2000)


class PreviewOut(OutModel):
    text: str


class PostIn(StrictModel):
    """A post of the content calendar: at ``at`` (HH:MM, workspace time zone) on ``weekdays``
    (ISO 1 = Monday … 7; empty = every day), to every group or to ``group_id``."""

    title: str = Field(min_length=1, max_length=100)
    text: str = Field(default="", max_length=2000)
    image: str | None = Field(default=None, max_length=2_000_000)
    link_url: str | None = Field(default=None, max_length=2000)
    weekdays: list[int] = Field(default_factory=list, max_length=7)
    at: str = Field(min_length=5, max_length=5, examples=["20:00"])
    group_id: str | None = Field(default=None, max_length=40)


class PostUpdate(StrictModel):
    status: Literal["active", "paused"]


class PostOut(OutModel):
    id: str
    community_id: str
    group_id: str | None
    title: str
    text: str
    image: str | None
    link_url: str | None
    weekdays: list[int]
    at: str
    status: str
    created_at: datetime


class PostSendOut(OutModel):
    id: str
    post_id: str
    group_id: str
    slot: str
    short_url: str | None
    link_id: str | None
    task_id: str | None
    task_status: str | None = Field(default=None, description="open / done: the owner's task")
    channel_send_id: str | None = Field(
        default=None, description="sent through the group's bot: channels' send record"
    )
    send_status: str | None = Field(
        default=None, description="that send's status (sending / sent / failed / suppressed …)"
    )
    wecom_mass_send_id: str | None = Field(
        default=None, description="sent to a WeCom customer group: the connector's mass send"
    )
    wecom_progress: str | None = Field(
        default=None,
        description="that task: sending / pending_confirmation (the owner has not confirmed in"
        " WeCom) / sent / failed / refused (monthly cap) / unknown",
    )
    clicks: int = Field(default=0, description="clicks on this group's short link")
    created_at: datetime


class MaterialIn(StrictModel):
    kind: Literal["title", "content", "image"]
    body: str = Field(min_length=1, max_length=2_000_000)


class MaterialOut(OutModel):
    id: str
    kind: str
    body: str
    created_at: datetime


class WecomPostIn(StrictModel):
    """An operator's group mass post to the community's WeCom customer groups."""

    idempotency_key: str = Field(
        min_length=1, max_length=150,
        description="the same key again returns the recorded tasks; WeCom is asked once",
    )  # fmt: skip
    text: str = Field(min_length=1, max_length=4000)
    group_ids: list[str] | None = Field(
        default=None, max_length=2000, description="only these groups (default: every WeCom group)"
    )


class WecomPostGroupOut(OutModel):
    group_id: str | None
    name: str
    chat_id: str
    status: str = Field(
        description="pending (the owner has not confirmed in WeCom) / sent / failed / over_cap"
        " (the group received WeCom's monthly 4 already) / refused / unknown / sending"
    )
    reason: str | None = None


class WecomPostOut(OutModel):
    id: str
    sender: str | None
    status: str
    progress: str
    text: str
    month: str
    errcode: int | None
    errmsg: str | None
    groups: list[WecomPostGroupOut]
    created_at: datetime | None
    results_at: datetime | None


class WecomSkippedOut(OutModel):
    group_id: str
    name: str
    reason: Literal["no_chat_id", "no_owner_wecom_userid"]


class WecomPostsOut(OutModel):
    items: list[WecomPostOut]
    skipped: list[WecomSkippedOut] = Field(default_factory=list)
    monthly_cap: int = Field(description="WeCom: mass messages one group receives per month")


class PreviewLinkOut(OutModel):
    url: str = Field(description="the entry page as a phone shows it, signed, for a frame")
    expires_at: int
