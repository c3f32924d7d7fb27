"""Group rules (群规则) as pure functions: compile a community's rules once, check a message.

Rules: banned keywords (one escaped alternation, so 200 keywords cost one regex scan), banned
patterns (the operator's regular expressions, each checked; invalid ones are refused when the
rules are saved), links (URLs, bare domains, WeChat group links), contact details (mobile
numbers, WeChat/QQ ids after their cue words, e-mail addresses), and a flood limit (messages
per sender per minute, counted in the database by the caller). Alert keywords (a price
question, a complaint word) are not violations: they alert the owner with the message.

The ladder maps a member's nth violation to an action: the step with the largest ``at`` not
above n (so past the last step the last action repeats).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from liebian.kit.errors import Invalid

MAX_PATTERN = 200
_LINK = re.compile(
    r"(?:https?://|www\.)\S+|weixin\.qq\.com/g/|\b[a-z0-9][a-z0-9-]{0,62}\."
    r"(?:com|cn|net|org|top|xyz|cc|vip|shop|club|info|io|me)\b",
    re.IGNORECASE,
)
_CONTACT = re.compile(
    r"(?<!\d)1[3-9]\d{9}(?!\d)"  # mainland mobile
    r"|(?:微信|薇信|威信|v信|vx|wx|加v|加微|wechat)\s*(?:号)?\s*[:：]?\s*[a-z][-_a-z0-9]{5,19}"
    r"|(?:qq|扣扣)\s*(?:号)?\s*[:：]?\s*\d{5,11}"
    r"|[\w.+-]+@[\w-]+\.[\w.]+",
    re.IGNORECASE,
)


def compile_pattern(pattern: str, field: str) -> re.Pattern[str]:
    if not pattern or len(pattern) > MAX_PATTERN:
        raise Invalid(
            f"a pattern must be 1–{MAX_PATTERN} characters",
            code="invalid_pattern",
            details={"field": field},
        )
    try:
        return re.compile(pattern, re.IGNORECASE)
    except re.error as exc:
        raise Invalid(
            f"pattern {pattern!r} is not a valid regular expression: {exc}",
            code="invalid_pattern",
            details={"field": field},
        ) from None


def _alternation(words: Sequence[str]) -> re.Pattern[str] | None:
    words = [w for w in dict.fromkeys(w.strip() for w in words) if w]
    if not words:
        return None
    # Longest first, so the reported match is the most specific word.
    return re.compile("|".join(re.escape(w) for w in sorted(words, key=len, reverse=True)), re.I)


@dataclass(frozen=True, slots=True)
class Hit:
    rule: str  # keyword / pattern:<n> / link / contact / flood
    matched: str


@dataclass(frozen=True, slots=True)
class Compiled:
    keywords: re.Pattern[str] | None
    patterns: tuple[re.Pattern[str], ...]
    block_links: bool
    block_contacts: bool
    flood_per_minute: int | None
    alerts: re.Pattern[str] | None
    ladder: tuple[tuple[int, str, int | None], ...]

    @property
    def empty(self) -> bool:
        return (
            self.keywords is None and not self.patterns and not self.block_links
            and not self.block_contacts and self.alerts is None and self.flood_per_minute is None
        )  # fmt: skip


def compile_rules(rules: Mapping[str, Any]) -> Compiled:
    ladder = sorted(
        (int(s["at"]), str(s["action"]), s.get("mute_hours")) for s in rules.get("ladder") or []
    ) or [(1, "warn", None), (2, "mute", 24), (3, "remove", None)]
    return Compiled(
        keywords=_alternation(rules.get("banned_keywords") or []),
        patterns=tuple(
            compile_pattern(p, f"rules.banned_patterns[{i}]")
            for i, p in enumerate(rules.get("banned_patterns") or [])
        ),
        block_links=bool(rules.get("block_links")),
        block_contacts=bool(rules.get("block_contact_details")),
        flood_per_minute=rules.get("flood_per_minute"),
        alerts=_alternation(rules.get("alert_keywords") or []),
        ladder=tuple(ladder),
    )


def check(compiled: Compiled, text: str) -> list[Hit]:
    """The banned things in ``text`` (flood is the caller's: it needs the count)."""
    hits: list[Hit] = []
    if compiled.keywords is not None and (m := compiled.keywords.search(text)):
        hits.append(Hit("keyword", m.group(0)))
    for i, pattern in enumerate(compiled.patterns):
        if m := pattern.search(text):
            hits.append(Hit(f"pattern:{i}", m.group(0)))
            break
    if compiled.block_links and (m := _LINK.search(text)):
        hits.append(Hit("link", m.group(0)))
    if compiled.block_contacts and (m := _CONTACT.search(text)):
        hits.append(Hit("contact", m.group(0)))
    return hits


def alert_words(compiled: Compiled, text: str) -> list[str]:
    if compiled.alerts is None:
        return []
    return list(dict.fromkeys(m.group(0) for m in compiled.alerts.finditer(text)))


def ladder_action(compiled: Compiled, step: int) -> tuple[str, int | None]:
    """(action, mute hours) for the member's ``step``-th violation."""
    chosen = compiled.ladder[0]
    for at, action, hours in compiled.ladder:
        if at <= step:
            chosen = (at, action, hours)
    return chosen[1], chosen[2] if chosen[1] == "mute" else None
