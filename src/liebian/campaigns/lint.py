"""Compliance lint for campaign copy (诱导分享 and related wording).

WeChat's external-link rules treat copy that makes sharing a condition for getting something,
pressures people morally into sharing, or scares them into it as 诱导分享; pages that do it get
their domain blocked. Operators are not lawyers, so the console runs this lint on every piece of
campaign copy and shows each finding with the matched text, where it is, and a compliant
rewording.

The lint warns, it does not block saving: wording is contextual and the operator decides. Rules
are regular expressions over the raw text (no segmentation needed for these phrases).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

Severity = Literal["error", "warning"]


@dataclass(frozen=True, slots=True)
class LintRule:
    code: str
    severity: Severity
    pattern: re.Pattern[str]
    message_zh: str
    message_en: str
    suggestion: str
    # Rules that only matter on external H5 pages (mini-programs have their own sanctioned
    # sharing APIs).
    external_h5_only: bool = False


@dataclass(frozen=True, slots=True)
class LintWarning:
    code: str
    severity: Severity
    matched: str
    start: int  # character offset in the text (not bytes)
    end: int
    message: str
    message_en: str
    suggestion: str
    field: str | None = None


# Share verbs and the things people are told to do.
_SHARE = r"(?:分享|转发|转给|发给|发到|分享到|转发到|发送到|晒到|晒朋友圈|发朋友圈|转朋友圈)"
_UNLOCK = r"(?:才能|才可以|才可|即可|方可|就能|就可以|后可|后才能|后即可|后方可)"
_GET = r"(?:领取|领|获得|获取|解锁|查看|观看|下载|参与|抽奖|得到|拿到|兑换|免费)"
_NUM = r"(?:\d+|[一二两三四五六七八九十几多]+)"

RULES: tuple[LintRule, ...] = (
    LintRule(
        "forced_share_unlock",
        "error",
        re.compile(rf"{_SHARE}[^。！!？?\n]{{0,12}}?{_UNLOCK}[^。！!？?\n]{{0,4}}?{_GET}"),
        "以分享/转发作为领取或解锁的条件，属于诱导分享",
        "Makes sharing a condition for getting or unlocking something (forced share)",
        "改为不以分享为条件，例如「填写信息即可领取」「关注公众号领取」；分享只作为可选项：「觉得有用可以分享给朋友」",
    ),
    LintRule(
        "forced_share_unlock",
        "error",
        re.compile(r"(?:不分享|不转发|未分享|没有分享)[^。！!？?\n]{0,8}?(?:无法|不能|不可)"),
        "不分享就不能领取/使用，属于诱导分享",
        "Says the reward is unavailable without sharing (forced share)",
        "去掉分享条件，让所有用户都能领取；可改为「邀请好友成功注册后双方各得奖励」",
    ),
    LintRule(
        "share_to_groups",
        "error",
        re.compile(
            rf"{_SHARE}[^。！!？?\n]{{0,6}}?{_NUM}\s*[个位名]?(?:微信)?(?:群|好友|朋友|人|个群)"
            rf"|(?:分享|转发)(?:至|到)?朋友圈[^。！!？?\n]{{0,6}}?(?:截图|保留|集)"
            r"|截图(?:发给|给|私信)(?:客服|小编|我们|管理员)"
        ),
        "要求分享到指定数量的群/好友或朋友圈截图，属于诱导分享",
        "Requires sharing to a number of groups/friends or screenshots of Moments posts",
        "去掉数量和截图要求；改为「邀请好友注册，每成功邀请 1 位得 1 份奖励」这类以真实注册/购买为准的机制",
    ),
    LintRule(
        "collect_likes",
        "error",
        re.compile(rf"集(?:满)?{_NUM}?\s*个?赞|集赞|点赞(?:数)?(?:达到|满){_NUM}"),
        "集赞送礼属于诱导分享",
        "Collecting likes for a reward is forced sharing",
        "改为直接领取，或按真实行为发放（例如「完成首单后领取」）",
    ),
    LintRule(
        "moral_pressure",
        "error",
        re.compile(
            r"不转(?:发)?(?:不是|就不是)[^。！!？?\n]{0,8}"
            r"|是中国人就(?:转|分享)"
            r"|不(?:转|转发|分享)(?:发)?(?:就|的话|则)[^。！!？?\n]{0,10}"
            r"|不(?:转|转发|分享)(?:发)?会(?:后悔|倒霉|遭|有报应|出事)"
            r"|转发(?:保平安|积德|得好运|有好运|转运)"
            r"|(?:看到|看完)(?:请|必须|一定要|务必)(?:转发|分享)"
            r"|良心的人都会转|有良心就转|不转(?:发)?(?:对不起|后悔)"
        ),
        "用道德绑架、迷信或威胁的方式要求转发，属于诱导分享",
        "Pressures people to share morally, superstitiously or with threats",
        "删除这类句子；只描述活动本身的价值，例如「这份资料对备考很有帮助，欢迎需要的朋友参与」",
    ),
    LintRule(
        "exaggerated_threat",
        "warning",
        re.compile(
            r"(?:马上|即将|随时|很快)(?:被)?(?:删除|删|封|屏蔽)"
            r"|速(?:看|转|存)|再不看就|紧急扩散|紧急通知|赶紧转|快转给"
            r"|(?:震惊|吓死人|太可怕了|后果很严重)"
        ),
        "夸大、恐吓或制造紧迫感的说法，容易被判定为诱导分享或谣言",
        "Exaggerated or threatening urgency; often judged as inducement or rumour",
        "用事实陈述活动时间，例如「活动截至 3 月 31 日」",
    ),
    LintRule(
        "external_h5_assist",
        "warning",
        re.compile(
            r"好友助力|助力(?:领|得|拿|赢|抢)|帮(?:我|忙|他|她)?(?:砍一刀|砍价|助力)|砍一刀"
        ),
        "外部 H5 页面中的好友助力/砍价收集会被微信判定为诱导分享",
        "Friend assist / bargain collection inside an external H5 page violates WeChat rules",
        "在小程序内开展助力/砍价；H5 页面改用「邀请好友注册，双方各得奖励」等不以他人点击为条件的机制",
        external_h5_only=True,
    ),
)


def lint_copy(
    text: str, *, external_h5: bool = True, field: str | None = None
) -> list[LintWarning]:
    """All findings in ``text``, in order of position.

    ``external_h5`` is True for copy shown on liebian's own H5 pages (the default, and the
    strictest); pass False for copy used inside a mini-program.
    """
    found: list[LintWarning] = []
    taken: list[tuple[int, int, str]] = []
    for rule in RULES:
        if rule.external_h5_only and not external_h5:
            continue
        for m in rule.pattern.finditer(text):
            if not m.group(0):
                continue
            # Two patterns of the same code over the same span would repeat the same finding.
            if any(code == rule.code and m.start() < e and s < m.end() for s, e, code in taken):
                continue
            taken.append((m.start(), m.end(), rule.code))
            found.append(
                LintWarning(
                    code=rule.code,
                    severity=rule.severity,
                    matched=m.group(0),
                    start=m.start(),
                    end=m.end(),
                    message=rule.message_zh,
                    message_en=rule.message_en,
                    suggestion=rule.suggestion,
                    field=field,
                )
            )
    found.sort(key=lambda w: (w.start, w.code))
    return found


def lint_fields(
    fields: Iterable[tuple[str, str]], *, external_h5: bool = True
) -> list[LintWarning]:
    """Lint several named pieces of copy (``(field_name, text)``), e.g. a campaign's title,
    description and share text; each finding carries its field name."""
    out: list[LintWarning] = []
    for name, text in fields:
        out.extend(lint_copy(text, external_h5=external_h5, field=name))
    return out
