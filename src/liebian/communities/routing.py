"""Pure rules of the entry page: check screening answers, and pick a tier from them.

No database here, so the rules are tested (and benchmarked) as plain functions.

Order of decision: the first routing rule whose question's answer is (or, for multiple choice,
includes) one of its values; else the first tier whose age range holds the months since the
tier's date question (as of ``today``); else no tier (any open group takes the person).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any

from liebian.kit.errors import Invalid

Answer = str | list[str] | date


def months_between(start: date, today: date) -> int:
    """Whole months from ``start`` to ``today`` (negative when ``start`` is in the future)."""
    months = (today.year - start.year) * 12 + (today.month - start.month)
    if today.day < start.day:
        months -= 1
    return months


def check_answers(
    questions: Sequence[Mapping[str, Any]], raw: Mapping[str, Any]
) -> dict[str, Answer]:
    """Typed answers, or a 422 naming the first wrong field (nothing is written before this)."""
    known = {q["key"] for q in questions}
    for key in raw:
        if key not in known:
            raise Invalid(
                f"unknown screening question {key!r}",
                code="invalid_answer",
                details={"field": f"answers.{key}"},
            )
    out: dict[str, Answer] = {}
    for q in questions:
        key, kind = q["key"], q["type"]
        field = f"answers.{key}"
        value = raw.get(key)
        empty = value is None or value == "" or value == []
        if empty:
            if q.get("required", True):
                raise Invalid(
                    f"请回答“{q['label']}”",
                    code="answer_required",
                    details={"field": field},
                )
            continue
        options = list(q.get("options") or [])
        if kind == "single":
            if not isinstance(value, str) or value not in options:
                raise Invalid(
                    f"“{q['label']}”请从以下选项中选一个：{'、'.join(options)}",
                    code="invalid_answer",
                    details={"field": field},
                )
            out[key] = value
        elif kind == "multiple":
            values = [value] if isinstance(value, str) else value
            if not isinstance(values, list) or not all(
                isinstance(v, str) and v in options for v in values
            ):
                raise Invalid(
                    f"“{q['label']}”请从以下选项中选择：{'、'.join(options)}",
                    code="invalid_answer",
                    details={"field": field},
                )
            out[key] = list(dict.fromkeys(values))
        elif kind == "text":
            if not isinstance(value, str) or len(value) > 200:
                raise Invalid(
                    f"“{q['label']}”最多 200 个字",
                    code="invalid_answer",
                    details={"field": field},
                )
            out[key] = value.strip()
        else:  # date
            try:
                out[key] = value if isinstance(value, date) else date.fromisoformat(str(value)[:10])
            except ValueError:
                raise Invalid(
                    f"“{q['label']}”请填写日期（YYYY-MM-DD）",
                    code="invalid_answer",
                    details={"field": field},
                ) from None
    return out


def age_tier(
    tiers: Sequence[Mapping[str, Any]], answers: Mapping[str, Any], today: date
) -> str | None:
    for tier in tiers:
        age = tier.get("age")
        if not age:
            continue
        value = answers.get(age["question"])
        if isinstance(value, str):
            try:
                value = date.fromisoformat(value[:10])
            except ValueError:
                continue
        if isinstance(value, date):
            months = months_between(value, today)
            if age["min_months"] <= months < age["max_months"]:
                return str(tier["key"])
    return None


def decide_tier(
    tiers: Sequence[Mapping[str, Any]],
    routing: Sequence[Mapping[str, Any]],
    answers: Mapping[str, Any],
    today: date,
) -> tuple[str | None, str | None]:
    """(tier, source): source "rule" or "age" (an age tier moves as time passes), or None."""
    for rule in routing:
        value = answers.get(rule["question"])
        chosen = value if isinstance(value, list) else [value]
        if any(v in rule["values"] for v in chosen if isinstance(v, str)):
            return str(rule["tier"]), "rule"
    tier = age_tier(tiers, answers, today)
    return (tier, "age") if tier is not None else (None, None)


def check_config(
    tiers: Sequence[Mapping[str, Any]],
    screening: Sequence[Mapping[str, Any]],
    routing: Sequence[Mapping[str, Any]],
) -> None:
    """Tiers, questions and rules refer to each other correctly, or a 422 that says which."""
    tier_keys = [t["key"] for t in tiers]
    if len(set(tier_keys)) != len(tier_keys):
        raise Invalid("tier keys must be unique", code="invalid_tiers", details={"field": "tiers"})
    questions = {q["key"]: q for q in screening}
    if len(questions) != len(screening):
        raise Invalid(
            "screening question keys must be unique",
            code="invalid_screening",
            details={"field": "screening"},
        )
    for i, q in enumerate(screening):
        if q["type"] in ("single", "multiple") and not q.get("options"):
            raise Invalid(
                f"question {q['key']!r} is a choice: give it options",
                code="invalid_screening",
                details={"field": f"screening[{i}].options"},
            )
        for option in q.get("tags") or {}:
            if option not in (q.get("options") or []):
                raise Invalid(
                    f"question {q['key']!r} tags option {option!r}, which it does not offer",
                    code="invalid_screening",
                    details={"field": f"screening[{i}].tags"},
                )
    for i, t in enumerate(tiers):
        age = t.get("age")
        if age:
            asked = questions.get(age["question"])
            if asked is None or asked["type"] != "date":
                raise Invalid(
                    f"tier {t['key']!r} is computed from {age['question']!r}, "
                    "which is not a date question of the screening form",
                    code="invalid_tiers",
                    details={"field": f"tiers[{i}].age.question"},
                )
            if age["min_months"] >= age["max_months"]:
                raise Invalid(
                    f"tier {t['key']!r}: min_months must be below max_months",
                    code="invalid_tiers",
                    details={"field": f"tiers[{i}].age"},
                )
    for i, rule in enumerate(routing):
        if rule["tier"] not in tier_keys:
            raise Invalid(
                f"routing rule {i + 1} sends people to tier {rule['tier']!r}, "
                f"which is not one of the community's tiers ({', '.join(tier_keys) or 'none'})",
                code="unknown_tier",
                details={"field": f"routing[{i}].tier"},
            )
        read = questions.get(rule["question"])
        if read is None or read["type"] not in ("single", "multiple"):
            raise Invalid(
                f"routing rule {i + 1} reads {rule['question']!r}, "
                "which is not a choice question of the screening form",
                code="invalid_routing",
                details={"field": f"routing[{i}].question"},
            )
        stray = [v for v in rule["values"] if v not in read.get("options", [])]
        if stray:
            raise Invalid(
                f"routing rule {i + 1}: {stray[0]!r} is not an option of {rule['question']!r}",
                code="invalid_routing",
                details={"field": f"routing[{i}].values"},
            )
