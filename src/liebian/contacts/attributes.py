"""Custom attributes: typed definitions per workspace (string, number, date, bool) and their
values per contact. Values arrive from PATCH on a contact, CSV import and ``$set`` on identify
or events; each is checked against its definition before anything is written, so an unknown
key or a wrong type is a 422 naming the field. Changes publish ``contact.attributes_changed``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from liebian.contacts.models import ATTRIBUTE_TYPES, AttributeDef, ContactAttribute
from liebian.kit.bus import publish_after_commit
from liebian.kit.clock import utcnow
from liebian.kit.errors import Conflict, Invalid, NotFound

ATTRIBUTES_CHANGED = "contact.attributes_changed"
# Keys that name built-in fields and therefore cannot be custom attributes.
RESERVED = frozenset(
    {"id", "external_id", "nickname", "phone", "email", "avatar_url", "tags", "created_at"}
)
_TRUE = {"true", "1", "yes", "y", "是", "t"}
_FALSE = {"false", "0", "no", "n", "否", "f"}

Columns = dict[str, Any]  # value_str / value_num / value_date / value_bool


def define(session: Session, workspace_id: str, key: str, type_: str, label: str) -> AttributeDef:
    if type_ not in ATTRIBUTE_TYPES:
        raise Invalid(
            f"type must be one of {', '.join(ATTRIBUTE_TYPES)}", details={"field": "type"}
        )
    if key in RESERVED:
        raise Invalid(
            f"{key!r} is a built-in contact field; pick another key",
            code="reserved_attribute",
            details={"field": "key"},
        )
    if session.get(AttributeDef, (workspace_id, key)) is not None:
        raise Conflict(
            f"attribute {key!r} is already defined",
            code="attribute_exists",
            details={"field": "key"},
        )
    attr = AttributeDef(
        workspace_id=workspace_id, key=key, type=type_, label=label, created_at=utcnow()
    )
    session.add(attr)
    session.flush()
    return attr


def defs(session: Session, workspace_id: str) -> dict[str, AttributeDef]:
    rows = session.scalars(
        select(AttributeDef)
        .where(AttributeDef.workspace_id == workspace_id)
        .order_by(AttributeDef.key)
    )
    return {d.key: d for d in rows}


def get_def(session: Session, workspace_id: str, key: str) -> AttributeDef:
    attr = session.get(AttributeDef, (workspace_id, key))
    if attr is None:
        raise NotFound(
            f"no attribute {key!r} is defined", code="attribute_not_found", details={"field": "key"}
        )
    return attr


def delete_def(session: Session, workspace_id: str, key: str) -> None:
    attr = get_def(session, workspace_id, key)
    session.execute(
        delete(ContactAttribute).where(
            ContactAttribute.workspace_id == workspace_id, ContactAttribute.key == key
        )
    )
    session.delete(attr)


def coerce(type_: str, value: Any, field: str) -> Columns:
    """The typed columns for ``value`` (JSON value or CSV text), or a 422 naming ``field``."""

    def bad(expected: str) -> Invalid:
        return Invalid(
            f"{field} must be {expected}, got {value!r}",
            code="invalid_attribute",
            details={"field": field, "expected": type_},
        )

    empty: Columns = {"value_str": None, "value_num": None, "value_date": None, "value_bool": None}
    if type_ == "string":
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise bad("a string")
        text = str(value)
        if len(text) > 1000:
            raise bad("at most 1000 characters")
        return {**empty, "value_str": text}
    if type_ == "number":
        if isinstance(value, bool):
            raise bad("a number")
        if isinstance(value, str):
            try:
                value = float(value.strip())
            except ValueError:
                raise bad("a number") from None
        if not isinstance(value, int | float) or not math.isfinite(value):
            raise bad("a number")
        return {**empty, "value_num": float(value)}
    if type_ == "date":
        if isinstance(value, datetime):
            return {**empty, "value_date": value.date()}
        if isinstance(value, date):
            return {**empty, "value_date": value}
        if isinstance(value, str):
            try:
                return {**empty, "value_date": date.fromisoformat(value.strip()[:10])}
            except ValueError:
                pass
        raise bad("a date (YYYY-MM-DD)")
    if type_ == "bool":
        if isinstance(value, bool):
            return {**empty, "value_bool": value}
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return {**empty, "value_bool": value.strip().lower() in _TRUE}
        raise bad("true or false")
    raise ValueError(type_)


def value_of(row: ContactAttribute, type_: str) -> Any:
    return {
        "string": row.value_str,
        "number": row.value_num,
        "date": row.value_date,
        "bool": row.value_bool,
    }.get(type_)


def validate(
    known: Mapping[str, AttributeDef], values: Mapping[str, Any], prefix: str = "attributes"
) -> dict[str, Columns | None]:
    """Check every key and value first (None = remove); raises before anything is written."""
    out: dict[str, Columns | None] = {}
    for key, value in values.items():
        field = f"{prefix}.{key}"
        attr = known.get(key)
        if attr is None:
            raise Invalid(
                f"unknown attribute {key!r}: define it first (POST /api/v1/contact-attributes)",
                code="unknown_attribute",
                details={"field": field},
            )
        out[key] = None if value is None or value == "" else coerce(attr.type, value, field)
    return out


def write(
    session: Session, workspace_id: str, contact_id: str, checked: Mapping[str, Columns | None]
) -> bool:
    """Apply values already validated; True when anything changed."""
    changed = False
    for key, columns in checked.items():
        row = session.get(ContactAttribute, (contact_id, key))
        if columns is None:
            if row is not None:
                session.delete(row)
                changed = True
            continue
        if row is None:
            session.add(
                ContactAttribute(
                    workspace_id=workspace_id, contact_id=contact_id, key=key, **columns
                )
            )
            changed = True
        elif any(getattr(row, k) != v for k, v in columns.items()):
            for k, v in columns.items():
                setattr(row, k, v)
            changed = True
    return changed


def set_attributes(
    session: Session,
    workspace_id: str,
    contact_id: str,
    values: Mapping[str, Any],
    prefix: str = "attributes",
) -> bool:
    checked = validate(defs(session, workspace_id), values, prefix)
    changed = write(session, workspace_id, contact_id, checked)
    if changed:
        announce(session, workspace_id, [contact_id])
    return changed


def announce(session: Session, workspace_id: str, contact_ids: Sequence[str]) -> None:
    if contact_ids:
        session.flush()
        publish_after_commit(
            session,
            ATTRIBUTES_CHANGED,
            {"workspace_id": workspace_id, "contact_ids": sorted(set(contact_ids))},
        )


def values_of(session: Session, workspace_id: str, contact_id: str) -> dict[str, Any]:
    known = defs(session, workspace_id)
    rows = session.scalars(
        select(ContactAttribute).where(ContactAttribute.contact_id == contact_id)
    )
    return {r.key: value_of(r, known[r.key].type) for r in rows if r.key in known}
