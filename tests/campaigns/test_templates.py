from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from liebian.campaigns.lint import lint_fields
from liebian.campaigns.schemas import (
    AssistConfig,
    DistributionConfig,
    GroupBuyConfig,
    InviteConfig,
    PosterConfig,
    parse_config,
)
from liebian.campaigns.templates import TEMPLATES, build_config, get_template, list_templates
from liebian.kit.errors import Invalid

CONFIG_CLASS = {
    "invite": InviteConfig,
    "group_buy": GroupBuyConfig,
    "assist": AssistConfig,
    "distribution": DistributionConfig,
    "poster": PosterConfig,
}


def test_at_least_twelve_templates_across_industries_and_types() -> None:
    assert len(TEMPLATES) >= 12
    assert len({t.key for t in TEMPLATES}) == len(TEMPLATES)
    assert {t.industry for t in TEMPLATES} == {"education", "ecommerce", "catering"}
    assert {t.type for t in TEMPLATES} == set(CONFIG_CLASS)
    assert len(list_templates("catering")) >= 3


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda t: t.key)
def test_every_template_validates(template: Any) -> None:
    config = build_config(template.key)
    assert isinstance(config, CONFIG_CLASS[template.type])
    assert config.type == template.type
    assert any("\u4e00" <= ch <= "\u9fff" for ch in template.description)


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda t: t.key)
def test_every_template_copy_passes_the_lint(template: Any) -> None:
    findings = lint_fields(template.copy_fields(), external_h5=template.channel == "h5")
    assert findings == [], findings


def test_assist_templates_run_in_mini_programs() -> None:
    # WeChat forbids friend-assist/bargain collection in external H5 pages.
    assert all(t.channel == "mini_program" for t in TEMPLATES if t.type == "assist")


def test_unknown_template_is_a_clear_422() -> None:
    with pytest.raises(Invalid) as err:
        get_template("nope")
    assert err.value.status == 422
    assert err.value.code == "unknown_template"
    assert "edu_invite_trial_class" in err.value.details["known"]


def test_overrides_deep_merge() -> None:
    cfg = build_config("ecom_group_buy_3", {"time_limit_hours": 48, "risk": {"mode": "block"}})
    assert isinstance(cfg, GroupBuyConfig)
    assert cfg.time_limit_hours == 48
    assert cfg.risk.mode == "block" and cfg.risk.hold_at == 40
    # The template itself is untouched.
    assert build_config("ecom_group_buy_3").time_limit_hours == 24  # type: ignore[union-attr]


def test_distribution_rejects_a_third_level() -> None:
    with pytest.raises(ValidationError) as err:
        parse_config(
            "distribution",
            {"levels": [{"rate_bp": 1000}, {"rate_bp": 300}, {"rate_bp": 100}]},
        )
    assert "at most 2 commission levels" in str(err.value)
    ok = parse_config("distribution", {"levels": [{"rate_bp": 1000}, {"rate_bp": 300}]})
    assert isinstance(ok, DistributionConfig)


@pytest.mark.parametrize("fee", [1, 9_900, -1])
def test_distribution_rejects_any_entry_fee(fee: int) -> None:
    with pytest.raises(ValidationError) as err:
        parse_config("distribution", {"levels": [{"rate_bp": 1000}], "entry_fee": fee})
    assert "entry fees are not allowed" in str(err.value)


def test_distribution_rejects_team_pay_fields_and_excessive_rates() -> None:
    with pytest.raises(ValidationError):
        parse_config("distribution", {"levels": [{"rate_bp": 1000}], "team_bonus_bp": 100})
    with pytest.raises(ValidationError):
        parse_config("distribution", {"levels": [{"rate_bp": 4000}, {"rate_bp": 2000}]})
    with pytest.raises(ValidationError):
        parse_config("distribution", {"levels": []})


def _invite(**kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "tiers": [{"invites": 1, "reward": {"kind": "coupon", "name": "券", "amount": 500}}]
    }
    base.update(kw)
    return base


@pytest.mark.parametrize(
    ("campaign_type", "config"),
    [
        (
            "invite",
            _invite(tiers=[{"invites": 1, "reward": {"kind": "cash", "name": "x", "amount": -1}}]),
        ),
        (
            "invite",
            _invite(
                tiers=[{"invites": 1, "reward": {"kind": "cash", "name": "x", "amount": 10**12}}]
            ),
        ),
        ("invite", _invite(budget=-5)),
        ("invite", _invite(budget=10**15)),
        ("invite", _invite(stock=0)),
        ("invite", _invite(qualifying_action="retained")),
        (
            "invite",
            _invite(
                tiers=[
                    {"invites": 3, "reward": {"kind": "gift", "name": "g", "amount": 1}},
                    {"invites": 1, "reward": {"kind": "gift", "name": "g", "amount": 1}},
                ]
            ),
        ),
        ("invite", _invite(unknown_key=1)),
        (
            "group_buy",
            {"product_name": "x", "original_price": 1000, "tiers": [{"size": 3, "price": 1200}]},
        ),
        (
            "group_buy",
            {"product_name": "x", "original_price": 1000, "tiers": [{"size": 1, "price": 500}]},
        ),
        (
            "group_buy",
            {"product_name": "x", "original_price": 1000, "tiers": [{"size": 3, "price": -500}]},
        ),
        (
            "group_buy",
            {
                "product_name": "x",
                "original_price": 1000,
                "tiers": [{"size": 2, "price": 500}, {"size": 4, "price": 600}],
            },
        ),
        (
            "group_buy",
            {
                "product_name": "x",
                "original_price": 1000,
                "tiers": [{"size": 2, "price": 500}],
                "leader_discount": 500,
            },
        ),
        ("assist", {"mode": "unlock"}),
        (
            "assist",
            {
                "mode": "bargain",
                "bargain": {"start_price": 100, "floor_price": 0, "max_helpers": 200},
            },
        ),
        (
            "assist",
            {
                "mode": "bargain",
                "bargain": {"start_price": 100, "floor_price": 100, "max_helpers": 2},
            },
        ),
        (
            "assist",
            {
                "mode": "bargain",
                "bargain": {"start_price": 10000, "max_helpers": 5, "max_cut": 100},
            },
        ),
        ("poster", {"headline": "x", "tiers": [], "background_color": "red"}),
        (
            "poster",
            {
                "headline": "x",
                "tiers": [{"invites": 1, "reward": {"kind": "gift", "name": "g", "amount": 1}}],
                "width": 10,
            },
        ),
        ("nonsense", {}),
    ],
)
def test_bad_configs_are_rejected(campaign_type: str, config: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        parse_config(campaign_type, config)


def test_type_mismatch_is_invalid() -> None:
    with pytest.raises(Invalid):
        parse_config("invite", {**_invite(), "type": "poster"})


def test_bargain_settings_give_rules() -> None:
    cfg = build_config("ecom_bargain_zero")
    assert isinstance(cfg, AssistConfig) and cfg.bargain is not None
    rules = cfg.bargain.rules()
    assert rules.total_cut == 9_900 and rules.bounds == (100, 2_000)
