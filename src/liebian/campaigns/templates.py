"""Ready-made campaigns: one call creates a working campaign with sensible defaults.

Templates are data. Each carries the copy shown to participants (checked by the compliance
lint in tests) and a full default config for its type (validated by ``schemas.parse_config``).
Operators override any part with a partial dict at creation time.

Assist/bargain templates are marked ``channel="mini_program"``: WeChat does not allow friend
assist or bargain collection inside external H5 pages, so those run in a mini-program; the H5
page then only shows status and a button to open the mini-program.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from liebian.campaigns.schemas import CampaignConfig, CampaignType, parse_config
from liebian.kit.errors import Invalid

Industry = Literal["education", "ecommerce", "catering"]
Channel = Literal["h5", "mini_program"]


@dataclass(frozen=True, slots=True)
class CampaignTemplate:
    key: str
    industry: Industry
    type: CampaignType
    name: str
    description: str
    share_text: str
    channel: Channel
    config: Mapping[str, Any] = field(default_factory=dict)

    def copy_fields(self) -> list[tuple[str, str]]:
        """Participant-visible copy, for the compliance lint."""
        fields = [("name", self.name), ("description", self.description)]
        fields.append(("share_text", self.share_text))
        for key in ("headline", "body"):
            if isinstance(self.config.get(key), str):
                fields.append((f"config.{key}", self.config[key]))
        return fields


def _coupon(name: str, amount: int, min_order: int = 0, valid_days: int = 30) -> dict[str, Any]:
    return {
        "kind": "coupon",
        "name": name,
        "amount": amount,
        "min_order": min_order,
        "valid_days": valid_days,
    }


def _gift(name: str, units: int = 1) -> dict[str, Any]:
    return {"kind": "gift", "name": name, "amount": units}


def _cash(name: str, amount: int) -> dict[str, Any]:
    return {"kind": "cash", "name": name, "amount": amount}


_REVIEW = {"mode": "review", "hold_at": 40, "block_at": 80}
# Cash and free goods attract farms: block outright on identity evidence.
_BLOCK = {"mode": "block", "hold_at": 40, "block_at": 80}

TEMPLATES: tuple[CampaignTemplate, ...] = (
    # ── education ──────────────────────────────────────────────────────────────────────────
    CampaignTemplate(
        key="edu_invite_trial_class",
        industry="education",
        type="invite",
        name="邀请3位好友领试听课",
        description="每邀请1位新朋友注册得5元课程券，累计邀请3位即可领取一节1对1试听课。",
        share_text="我在这里上课挺有收获，送你一张新人体验券，注册就能用。",
        channel="h5",
        config={
            "tiers": [
                {"invites": 1, "reward": _coupon("5元课程券", 500, 9_900)},
                {"invites": 3, "reward": _gift("1对1试听课")},
            ],
            "invitee_reward": _coupon("新人体验券", 1_000, 9_900),
            "qualifying_action": "signup",
            "new_users_only": True,
            "max_rewards_per_participant": 1,
            "stock": 500,
            "duration_days": 30,
            "risk": _REVIEW,
        },
    ),
    CampaignTemplate(
        key="edu_poster_materials",
        industry="education",
        type="poster",
        name="海报裂变领资料包",
        description="生成你的专属海报，2位好友扫码添加老师后，你将获得《考研英语真题精讲》资料包。",
        share_text="整理好的考研英语真题精讲，需要的同学扫码找老师领。",
        channel="h5",
        config={
            "headline": "考研英语真题精讲",
            "body": "近十年真题逐题解析，附高频词汇表。扫码添加老师，免费领取电子版。",
            "background_color": "#E7F5FF",
            "gradient_to": "#A5D8FF",
            "text_color": "#0B2545",
            "tiers": [{"invites": 2, "reward": _gift("考研英语资料包")}],
            "qualifying_action": "join_group",
            "duration_days": 14,
            "risk": _REVIEW,
        },
    ),
    CampaignTemplate(
        key="edu_group_buy_course",
        industry="education",
        type="group_buy",
        name="3人拼团学Python",
        description="原价499元的Python入门课，3人成团每人199元，5人成团每人169元，24小时内成团有效。",
        share_text="一起拼团学Python，3人成团每人199元。",
        channel="h5",
        config={
            "product_name": "Python入门课",
            "original_price": 49_900,
            "tiers": [{"size": 3, "price": 19_900}, {"size": 5, "price": 16_900}],
            "time_limit_hours": 24,
            "leader_discount": 2_000,
            "purchase_limit": 1,
            "stock": 1_000,
            "risk": _REVIEW,
        },
    ),
    CampaignTemplate(
        key="edu_distribution_course",
        industry="education",
        type="distribution",
        name="课程推广分销（二级佣金）",
        description="推荐好友购买课程得20%佣金，你推荐的推广员成交你再得5%；佣金7天退款期后结算。",
        share_text="这门课我学完了，推荐给你，用我的链接购买有专属优惠。",
        channel="h5",
        config={
            "levels": [{"rate_bp": 2_000}, {"rate_bp": 500}],
            "binding": "first_touch",
            "lock_days": 30,
            "freeze_days": 7,
            "min_withdrawal": 1_000,
            "risk": _BLOCK,
        },
    ),
    CampaignTemplate(
        key="edu_assist_unlock_live",
        industry="education",
        type="assist",
        name="5位好友支持解锁直播课",
        description="邀请5位好友在小程序内为你点亮，即可解锁名师直播课回放；每位好友每天最多支持3次。",
        share_text="帮我点亮一下，一起看名师直播课回放。",
        channel="mini_program",
        config={
            "mode": "unlock",
            "helpers_required": 5,
            "reward": _gift("名师直播课回放"),
            "time_limit_hours": 48,
            "max_helps_per_helper_per_day": 3,
            "stock": 2_000,
            "risk": _REVIEW,
        },
    ),
    # ── e-commerce ─────────────────────────────────────────────────────────────────────────
    CampaignTemplate(
        key="ecom_referral_cashback",
        industry="ecommerce",
        type="invite",
        name="老带新返现",
        description="好友通过你的链接完成首单，你得20元现金返现，好友得15元新人券；7天无退款后到账。",
        share_text="这家店的东西不错，新人首单用这张15元券更划算。",
        channel="h5",
        config={
            "tiers": [{"invites": 1, "reward": _cash("老带新返现", 2_000)}],
            "invitee_reward": _coupon("新人15元券", 1_500, 9_900),
            "qualifying_action": "first_purchase",
            "new_users_only": True,
            "max_rewards_per_participant": 20,
            "budget": 2_000_000,
            "reward_delay_days": 7,
            "duration_days": 60,
            "risk": _BLOCK,
        },
    ),
    CampaignTemplate(
        key="ecom_referral_decreasing",
        industry="ecommerce",
        type="invite",
        name="递减奖励·老带新",
        description="每邀请1位好友完成首单得10元现金，之后每一轮少20%（10、8、6.4元…），最多10轮；"
        "好友得10元新人券。早邀请多得，预算可控。",
        share_text="这家店新人首单有10元券，用我的链接领。",
        channel="h5",
        config={
            "tiers": [{"invites": 1, "reward": _cash("邀请返现", 1_000)}],
            "invitee_reward": _coupon("新人10元券", 1_000, 5_900),
            "qualifying_action": "first_purchase",
            "new_users_only": True,
            "max_rewards_per_participant": 10,
            "cycle_decrease_bp": 2_000,
            "budget": 1_000_000,
            "reward_delay_days": 7,
            "duration_days": 30,
            "risk": _BLOCK,
        },
    ),
    CampaignTemplate(
        key="ecom_group_buy_3",
        industry="ecommerce",
        type="group_buy",
        name="拼团3人成团",
        description="精选坚果礼盒原价168元，3人成团每人99元，团长再减10元；24小时未成团自动退款。",
        share_text="坚果礼盒3人拼团99元，一起拼吗？",
        channel="h5",
        config={
            "product_name": "坚果礼盒",
            "original_price": 16_800,
            "tiers": [{"size": 3, "price": 9_900}],
            "time_limit_hours": 24,
            "leader_discount": 1_000,
            "purchase_limit": 2,
            "stock": 5_000,
            "risk": _REVIEW,
        },
    ),
    CampaignTemplate(
        key="ecom_bargain_zero",
        industry="ecommerce",
        type="assist",
        name="砍价0元购",
        description="在小程序内发起砍价，最多20位好友参与，价格降到0元即可免费下单；48小时内有效。",
        share_text="这款保温杯正在做0元购活动，来小程序看看。",
        channel="mini_program",
        config={
            "mode": "bargain",
            "bargain": {
                "start_price": 9_900,
                "floor_price": 0,
                "max_helpers": 20,
                "cut_mode": "random",
                "min_cut": 100,
                "max_cut": 2_000,
            },
            "time_limit_hours": 48,
            "max_helps_per_helper_per_day": 3,
            "stock": 200,
            "risk": _BLOCK,
        },
    ),
    CampaignTemplate(
        key="ecom_distribution_two_level",
        industry="ecommerce",
        type="distribution",
        name="分销二级佣金",
        description="成为推广员无需任何费用：直接成交得10%佣金，二级成交得3%；退款订单不计佣金。",
        share_text="我常买的店，用我的链接下单，售后一样有保障。",
        channel="h5",
        config={
            "levels": [{"rate_bp": 1_000}, {"rate_bp": 300}],
            "binding": "registration",
            "lock_days": 90,
            "freeze_days": 15,
            "min_withdrawal": 5_000,
            "risk": _BLOCK,
        },
    ),
    CampaignTemplate(
        key="ecom_double_sided_coupon",
        industry="ecommerce",
        type="invite",
        name="邀新双向得券",
        description="邀请好友注册，你和好友各得一张满99减20优惠券；邀请满5人再送一份新品试用装。",
        share_text="送你一张满99减20的券，注册就能领。",
        channel="h5",
        config={
            "tiers": [
                {"invites": 1, "reward": _coupon("满99减20券", 2_000, 9_900)},
                {"invites": 5, "reward": _gift("新品试用装")},
            ],
            "invitee_reward": _coupon("满99减20券", 2_000, 9_900),
            "qualifying_action": "signup",
            "max_rewards_per_participant": 5,
            "stock": 10_000,
            "duration_days": 30,
            "risk": _REVIEW,
        },
    ),
    # ── catering ───────────────────────────────────────────────────────────────────────────
    CampaignTemplate(
        key="food_invite_coupon",
        industry="catering",
        type="invite",
        name="餐饮邀请领券",
        description="邀请好友加入门店福利群，每位好友入群你得10元代金券（满50可用），好友也得一张。",
        share_text="我们楼下这家店的福利群，进群领10元代金券。",
        channel="h5",
        config={
            "tiers": [{"invites": 1, "reward": _coupon("10元代金券", 1_000, 5_000, 14)}],
            "invitee_reward": _coupon("10元代金券", 1_000, 5_000, 14),
            "qualifying_action": "join_group",
            "invalid_on_leave": True,
            "max_rewards_per_participant": 10,
            "stock": 3_000,
            "duration_days": 30,
            "risk": _REVIEW,
        },
    ),
    CampaignTemplate(
        key="food_group_buy_set_meal",
        industry="catering",
        type="group_buy",
        name="双人套餐拼团",
        description="招牌双人套餐原价198元，2人成团128元，4人成团118元；成团后30天内到店核销。",
        share_text="招牌双人套餐拼团价128元，约吗？",
        channel="h5",
        config={
            "product_name": "招牌双人套餐",
            "original_price": 19_800,
            "tiers": [{"size": 2, "price": 12_800}, {"size": 4, "price": 11_800}],
            "time_limit_hours": 12,
            "leader_discount": 0,
            "purchase_limit": 2,
            "stock": 800,
            "risk": _REVIEW,
        },
    ),
    CampaignTemplate(
        key="food_poster_free_drink",
        industry="catering",
        type="poster",
        name="海报邀请送饮品",
        description="生成专属海报，3位新朋友扫码入群，你可到店免费领取一杯招牌奶茶。",
        share_text="新店开业，扫码进群有到店福利。",
        channel="h5",
        config={
            "headline": "新店开业福利",
            "body": "扫码加入门店福利群，每周上新和到店优惠第一时间知道。",
            "background_color": "#FFF0F6",
            "gradient_to": "#FCC2D7",
            "text_color": "#5C0F2E",
            "tiers": [{"invites": 3, "reward": _gift("招牌奶茶一杯")}],
            "qualifying_action": "join_group",
            "stock": 1_000,
            "duration_days": 14,
            "risk": _REVIEW,
        },
    ),
    CampaignTemplate(
        key="food_stamp_leaderboard",
        industry="catering",
        type="invite",
        name="邀请好友首单得霸王餐",
        description="好友首次到店消费后计为1次有效邀请：邀请2位得饮品券，邀请5位得100元霸王餐券。",
        share_text="这家店真的好吃，首单用我的券立减15元。",
        channel="h5",
        config={
            "tiers": [
                {"invites": 2, "reward": _coupon("饮品券", 1_800, 0, 30)},
                {"invites": 5, "reward": _coupon("100元霸王餐券", 10_000, 10_000, 30)},
            ],
            "invitee_reward": _coupon("首单立减15元", 1_500, 6_000, 14),
            "qualifying_action": "first_purchase",
            "max_rewards_per_participant": 1,
            "stock": 300,
            "reward_delay_days": 1,
            "duration_days": 45,
            "risk": _REVIEW,
        },
    ),
)

_BY_KEY = {t.key: t for t in TEMPLATES}


def list_templates(industry: Industry | None = None) -> list[CampaignTemplate]:
    return [t for t in TEMPLATES if industry is None or t.industry == industry]


def get_template(key: str) -> CampaignTemplate:
    try:
        return _BY_KEY[key]
    except KeyError:
        raise Invalid(
            f"unknown template {key!r}",
            code="unknown_template",
            details={"field": "template", "known": sorted(_BY_KEY)},
        ) from None


def build_config(key: str, overrides: Mapping[str, Any] | None = None) -> CampaignConfig:
    """The template's config with ``overrides`` deep-merged, validated for its type.

    Dicts merge key by key; lists and scalars replace (a partial tier list would be ambiguous).
    """
    template = get_template(key)
    merged = _deep_merge(copy.deepcopy(dict(template.config)), overrides or {})
    return parse_config(template.type, merged)


def _deep_merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    for k, v in extra.items():
        if isinstance(v, Mapping) and isinstance(base.get(k), dict):
            base[k] = _deep_merge(base[k], v)
        else:
            base[k] = copy.deepcopy(v)
    return base
