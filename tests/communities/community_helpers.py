"""Builders shared by the communities tests."""

from __future__ import annotations

from typing import Any

WECHAT_UA = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Mobile/15E148 MicroMessenger/8.0.47(0x18002f2c) NetType/WIFI Language/zh_CN"
)
PNG = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII="


def mother_baby(**extra: Any) -> dict[str, Any]:
    """A mother-and-baby community: 0–3 and 3–8 year tiers from the baby's birthday."""
    return {
        "name": "宝妈交流群",
        "kind": "acquisition",
        "threshold": "screening",
        "tiers": [
            {"key": "t03", "name": "0–3 岁", "age": {"question": "birthday", "min_months": -12, "max_months": 36}},
            {"key": "t38", "name": "3–8 岁", "age": {"question": "birthday", "min_months": 36, "max_months": 96}},
            {"key": "bj", "name": "北京同城"},
        ],
        "screening": [
            {"key": "birthday", "label": "宝宝生日或预产期", "type": "date", "attribute": "baby_birthday"},
            {"key": "city", "label": "所在城市", "type": "single", "options": ["北京", "上海", "其他"]},
            {"key": "topics", "label": "关心的话题", "type": "multiple", "options": ["辅食", "早教", "睡眠"], "required": False},
            {"key": "nick", "label": "怎么称呼你", "type": "text", "required": False},
        ],
        "routing": [{"question": "city", "values": ["北京"], "tier": "bj"}],
        **extra,
    }  # fmt: skip
