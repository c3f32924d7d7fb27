"""Group rules (群规则): checking a message against a community's rules, as pure functions."""

from __future__ import annotations

import re

from liebian.kit.errors import Invalid

MAX_PATTERN = 200


def compile_pattern(pattern: str, field: str) -> re.Pattern[str]:
    if not pattern or len(pattern) > MAX_PATTERN:
        raise Invalid(
            f"a pattern must be 1–{MAX_PATTERN} characters", code="invalid_pattern",
            details={"field": field},
        )  # fmt: skip
    try:
        return re.compile(pattern, re.IGNORECASE)
    except re.error as exc:
        raise Invalid(
            f"pattern {pattern!r} is not a valid regular expression: {exc}",
            code="invalid_pattern",
            details={"field": field},
        ) from None
