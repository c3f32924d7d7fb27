"""Cursor pagination over time-sortable ids: the cursor is the last id seen, made opaque."""

from __future__ import annotations

import base64
import re
from typing import Any

from sqlalchemy import Select
from sqlalchemy.orm import InstrumentedAttribute

from liebian.kit.errors import Invalid

MAX_LIMIT = 500


def encode_cursor(last_id: str) -> str:
    return base64.urlsafe_b64encode(last_id.encode()).decode().rstrip("=")


_ID_RE = re.compile(r"^[a-z]+_[0-9A-HJKMNP-TV-Z]{26}$")


def decode_cursor(cursor: str) -> str:
    try:
        value = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except ValueError:
        value = ""
    if not _ID_RE.match(value):
        raise Invalid(
            "cursor is not one this API gave out; pass next_cursor unchanged", code="bad_cursor"
        )
    return value


def paginate(
    stmt: Select[Any], id_column: InstrumentedAttribute[str], cursor: str | None, limit: int
) -> Select[Any]:
    """Newest first; fetch one extra row to know whether a next page exists."""
    if not 1 <= limit <= MAX_LIMIT:
        raise Invalid(f"limit must be between 1 and {MAX_LIMIT}", code="bad_limit")
    if cursor:
        stmt = stmt.where(id_column < decode_cursor(cursor))
    return stmt.order_by(id_column.desc()).limit(limit + 1)


def page_of(
    rows: list[Any], limit: int, id_of: Any = lambda r: r.id
) -> tuple[list[Any], str | None]:
    if len(rows) > limit:
        rows = rows[:limit]
        return rows, encode_cursor(id_of(rows[-1]))
    return rows, None
