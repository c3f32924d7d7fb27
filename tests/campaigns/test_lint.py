from __future__ import annotations

import pytest

from liebian.campaigns.lint import lint_copy, lint_fields


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("分享后才能领取试听课", "forced_share_unlock"),
        ("转发到朋友圈才能领取资料包", "forced_share_unlock"),
        ("转发才能领取优惠券", "forced_share_unlock"),
        ("分享给好友即可解锁全部课程", "forced_share_unlock"),
        ("把海报转发后即可免费领", "forced_share_unlock"),
        ("不分享无法领取奖品", "forced_share_unlock"),
        ("分享到3个群，截图发给客服领取", "share_to_groups"),
        ("转发到三个微信群即可参与", "share_to_groups"),
        ("分享给5位好友", "share_to_groups"),
        ("转发朋友圈截图给客服", "share_to_groups"),
        ("集赞38个送奶茶", "collect_likes"),
        ("朋友圈集满20个赞免单", "collect_likes"),
        ("集赞活动火热进行中", "collect_likes"),
        ("不转不是中国人！", "moral_pressure"),
        ("不转发就没有好运", "moral_pressure"),
        ("是中国人就转起来", "moral_pressure"),
        ("转发保平安", "moral_pressure"),
        ("看到请转发，功德无量", "moral_pressure"),
        ("不转会后悔一辈子", "moral_pressure"),
        ("紧急扩散！这个群马上被删除", "exaggerated_threat"),
        ("速看，再不看就没了", "exaggerated_threat"),
        ("震惊！原来这样就能省钱", "exaggerated_threat"),
        ("邀请好友助力，0元拿好礼", "external_h5_assist"),
        ("快来帮我砍一刀", "external_h5_assist"),
        ("助力领红包", "external_h5_assist"),
    ],
)
def test_violations_are_found(text: str, code: str) -> None:
    findings = lint_copy(text)
    assert code in {f.code for f in findings}, findings
    f = next(f for f in findings if f.code == code)
    assert text[f.start : f.end] == f.matched
    assert f.matched
    assert f.suggestion and f.message and f.message_en


@pytest.mark.parametrize(
    "text",
    [
        "邀请3位好友注册，即可领取试听课",
        "老带新：好友下单后你得 20 元返现",
        "3 人成团，享拼团价 99 元",
        "觉得有用可以分享给需要的朋友",
        "扫码添加老师微信，领取备考资料包",
        "活动截至 3 月 31 日，名额有限",
        "每成功邀请 1 位好友注册，奖励 1 次抽奖机会",
        "我们不分享会员的个人信息",
        "分享你的学习心得，和同学一起进步",
        "新品即将上架，敬请期待",
        "转发本文不是参与活动的条件",
        "好友成功下单，你可获得 10% 佣金",
    ],
)
def test_compliant_copy_passes(text: str) -> None:
    assert lint_copy(text) == []


def test_assist_wording_only_warns_on_external_h5() -> None:
    text = "邀请好友助力，助力满 5 人得奖品"
    assert {f.code for f in lint_copy(text)} == {"external_h5_assist"}
    assert all(f.severity == "warning" for f in lint_copy(text))
    assert lint_copy(text, external_h5=False) == []


def test_positions_are_character_offsets_and_sorted() -> None:
    text = "限时活动：集赞30个，转发才能领取！"
    findings = lint_copy(text)
    assert [f.code for f in findings] == ["collect_likes", "forced_share_unlock"]
    assert findings[0].start == text.index("集赞")
    assert findings[1].start == text.index("转发")
    assert all(f.severity == "error" for f in findings)


def test_lint_fields_names_the_field() -> None:
    findings = lint_fields([("title", "拼团特惠"), ("share_text", "不转不是中国人")])
    assert len(findings) == 1
    assert findings[0].field == "share_text"
    assert findings[0].code == "moral_pressure"
