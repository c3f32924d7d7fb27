"""Request and result models of the analytics queries (the HTTP layer serves these as is)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

DEFAULT_TZ = "Asia/Shanghai"


class _Model(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid")


# Bounds on what one query may ask for, so a mistyped year or an hourly series over decades
# is a 422 naming the field instead of a query that runs for minutes.
MAX_RANGE = timedelta(days=3660)  # ten years
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)
MAX_BUCKETS = 20_000
MAX_EVENT_NAMES = 100
_BUCKET = {
    "hour": timedelta(hours=1),
    "day": timedelta(days=1),
    "week": timedelta(weeks=1),
    "month": timedelta(days=28),
}


def _check_tz(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ValueError, KeyError, OSError) as exc:  # ZoneInfoNotFoundError is a KeyError
        raise ValueError(
            f"unknown time zone {value!r}; use an IANA name such as {DEFAULT_TZ}"
        ) from exc
    return value


TimeZone = Annotated[
    str, Field(max_length=64, description="IANA time zone name"), AfterValidator(_check_tz)
]
EventName = Annotated[str, Field(min_length=1, max_length=128)]
EventNames = Annotated[list[EventName], Field(max_length=MAX_EVENT_NAMES)]


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


class _Range(_Model):
    from_: datetime = Field(alias="from")
    to: datetime

    @model_validator(mode="after")
    def _ordered(self) -> _Range:
        start, end = _aware(self.from_), _aware(self.to)
        if end <= start:
            raise ValueError("'to' must be after 'from'")
        if start < EARLIEST or end > LATEST:
            raise ValueError("'from' and 'to' must lie between 1970 and 2200")
        if end - start > MAX_RANGE:
            raise ValueError(
                f"'to' is more than {MAX_RANGE.days} days after 'from'; query a shorter range"
            )
        interval = getattr(self, "interval", None)
        if interval in _BUCKET and (end - start) / _BUCKET[interval] > MAX_BUCKETS:
            raise ValueError(
                f"this range holds more than {MAX_BUCKETS} buckets of one {interval}; choose a"
                " longer interval or a shorter range"
            )
        return self


# -- funnel -------------------------------------------------------------------------------


class FunnelStep(_Model):
    event: str
    where: dict[str, Any] | None = None


class FunnelQuery(_Range):
    steps: list[FunnelStep] = Field(min_length=2, max_length=20)
    window_seconds: int = Field(gt=0, le=366 * 86400)
    breakdown: str | None = None  # "channel" = first-touch channel; else a column/property


class FunnelStepResult(_Model):
    event: str
    count: int
    conversion_rate: float  # vs step 1
    step_conversion_rate: float  # vs the previous step
    median_seconds_to_convert: float | None  # from step 1; None for step 1 / nobody


class FunnelBreakdown(_Model):
    value: str | None
    steps: list[FunnelStepResult]


class FunnelResult(_Model):
    steps: list[FunnelStepResult]
    breakdown: list[FunnelBreakdown] | None = None


# -- retention ----------------------------------------------------------------------------


class RetentionQuery(_Range):
    start_event: str
    return_event: str
    # Conditions on the start / return events (the funnel steps' ``where`` language), e.g.
    # people whose group_joined has properties.tier = "t03".
    start_where: dict[str, Any] | None = None
    return_where: dict[str, Any] | None = None
    period: Literal["day", "week"] = "day"
    periods: int = Field(default=7, ge=1, le=366)
    breakdown: Literal["channel"] | None = None
    tz: TimeZone = DEFAULT_TZ


class Cohort(_Model):
    start: str  # local date of the cohort's first period, YYYY-MM-DD
    size: int
    retained: list[int]  # people returning in period 0..periods (inclusive)


class RetentionBreakdown(_Model):
    value: str | None
    cohorts: list[Cohort]


class RetentionResult(_Model):
    cohorts: list[Cohort]
    breakdown: list[RetentionBreakdown] | None = None


# -- counts -------------------------------------------------------------------------------


class CountsQuery(_Range):
    events: EventNames | None = None  # None = every event
    interval: Literal["hour", "day", "week", "month"] = "day"
    tz: TimeZone = DEFAULT_TZ
    breakdown: str | None = None
    where: dict[str, Any] | None = None
    include_bots: bool = False


class CountRow(_Model):
    bucket: str  # local start of the bucket, 'YYYY-MM-DD HH:MM:SS'
    value: str | None = None  # breakdown value
    count: int
    unique_users: int


class CountsResult(_Model):
    rows: list[CountRow]


class NewReturningQuery(_Range):
    events: EventNames | None = None
    interval: Literal["hour", "day", "week", "month"] = "day"
    tz: TimeZone = DEFAULT_TZ


class NewReturningRow(_Model):
    bucket: str
    new_users: int  # first event ever of the person falls in this bucket
    returning_users: int


class NewReturningResult(_Model):
    rows: list[NewReturningRow]


# -- attribution, LTV, CAC ----------------------------------------------------------------


class AttributionQuery(_Range):
    conversion_event: str = "purchase"
    touch_events: EventNames = Field(default_factory=lambda: ["click"])
    dimension: Literal["channel", "link_id", "campaign_id", "utm_source", "utm_campaign"] = (
        "channel"
    )
    model: Literal["first_touch", "last_touch", "linear"] = "last_touch"
    lookback_days: int = Field(default=30, ge=0, le=365)


class AttributionRow(_Model):
    value: str | None  # None = conversions with no touch in the lookback (direct)
    conversions: float
    revenue: int  # credited revenue, minor units (rounded to whole 分)


class AttributionResult(_Model):
    model: str
    rows: list[AttributionRow]


class LtvQuery(_Range):
    revenue_event: str = "purchase"
    cohort_period: Literal["day", "week", "month"] = "month"
    horizon_days: int | None = Field(default=None, ge=1, le=MAX_RANGE.days)
    tz: TimeZone = DEFAULT_TZ


class LtvRow(_Model):
    cohort: str
    channel: str | None
    users: int
    revenue: int  # minor units
    ltv: float  # revenue / users, minor units


class LtvResult(_Model):
    rows: list[LtvRow]


class SpendRow(_Model):
    channel: str
    amount: int  # minor units spent in the query range


class CacQuery(_Range):
    revenue_event: str = "purchase"
    spend: list[SpendRow] = Field(max_length=10_000)


class CacRow(_Model):
    channel: str | None
    spend: int
    new_users: int
    revenue: int
    cac: float | None  # spend / new users
    roi: float | None  # (revenue - spend) / spend


class CacResult(_Model):
    rows: list[CacRow]


# -- A/B ----------------------------------------------------------------------------------


class AbQuery(_Range):
    arm_field: str = "properties.variant"  # or link_id, campaign_id, utm_content, ...
    exposure_event: str = "click"
    conversion_event: str = "purchase"
    control: str | None = None  # default: the arm with the most exposures
    confidence: float = Field(default=0.95, gt=0.5, lt=1)
    min_sample: int = Field(default=100, ge=1)
    planned_sample: int | None = Field(default=None, ge=1)


class AbArm(_Model):
    arm: str
    exposed: int
    converted: int
    rate: float
    diff_vs_control: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    z: float | None = None
    p_value: float | None = None
    significant: bool | None = None


class AbResult(_Model):
    control: str | None
    arms: list[AbArm]
    sufficient_sample: bool
    warnings: list[str]


# -- named metrics, link stats ------------------------------------------------------------


class MetricEvents(_Model):
    visit: str = "page_view"
    click: str = "click"
    signup: str = "signup"
    join_group: str = "join_group"
    invite: str = "invite"
    share: str = "share"
    purchase: str = "purchase"


class MetricsQuery(_Range):
    events: MetricEvents = Field(default_factory=MetricEvents)
    tz: TimeZone = DEFAULT_TZ


class MetricsResult(_Model):
    active_users: int
    group_join_rate: float | None  # 入群转化率
    day1_retention: float | None  # 次日留存
    day7_retention: float | None  # 7日留存
    invite_rate: float | None  # 邀请率
    share_rate: float | None  # 分享率
    conversion_rate: float | None  # 转化率
    orders: int
    gmv: int  # minor units
    aov: float | None  # 客单价
    arpu: float | None


class LinkStats(_Model):
    clicks: int  # humans (scans included)
    bot_clicks: int
    qr_scans: int
    unique_visitors: int
    by_platform: dict[str, int]  # humans by platform id; bots under "bot"
    by_day: dict[str, int]  # local date -> human clicks
