"""Contacts CSV import and export.

Import (at most 10,000 rows a call): the header names the columns — ``external_id``
(required), ``nickname``, ``phone``, ``email``, ``avatar_url``, ``tags`` (tag names separated
by ``|``, tags must exist) and any defined custom attribute key. Every row is validated first;
any problem makes a 422 listing each bad cell by row number (the header is row 1) and field,
and nothing is written. Then all rows are written in the caller's one transaction. Given PII
replaces what is stored (an import is an operator's decision, unlike a participant's join).

Export streams CSV (UTF-8 with BOM for Excel); PII columns appear only for roles that may see
PII, and every cell goes through ``kit.csv_safe.neutralize`` (no formula injection).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from liebian.contacts import attributes, identity, repository, tags
from liebian.contacts.models import Contact, ContactAttribute, Tag
from liebian.contacts.service import check_external_id, display, set_nickname
from liebian.kit.clock import utcnow
from liebian.kit.crypto import PiiCipher
from liebian.kit.csv_safe import neutralize
from liebian.kit.errors import Invalid, TooLarge
from liebian.kit.ids import new_id
from liebian.risk.normalize import normalize_email, normalize_phone

MAX_ROWS = 10_000
BUILTIN = ("external_id", "nickname", "phone", "email", "avatar_url", "tags")
MAX_ERRORS_LISTED = 200


@dataclass(slots=True)
class _Row:
    number: int
    external_id: str
    pii: dict[str, str | None] = field(default_factory=dict)
    attrs: dict[str, attributes.Columns | None] = field(default_factory=dict)
    tag_ids: list[str] = field(default_factory=list)


def _parse(text: str) -> tuple[list[str], list[list[str]]]:
    if text.startswith("\ufeff"):
        text = text[1:]
    reader = csv.reader(io.StringIO(text))
    try:
        header = [h.strip() for h in next(reader)]
        rows = [r for r in reader if any(cell.strip() for cell in r)]
    except StopIteration:
        raise Invalid(
            "the CSV is empty: the first row must name the columns (external_id, …)",
            code="empty_csv",
            details={"field": "body"},
        ) from None
    except csv.Error as exc:
        # A bare CR inside an unquoted cell, a cell over the csv module's size limit.
        raise Invalid(
            f"the CSV cannot be read at line {reader.line_num}: {exc}; quote cells that hold"
            " line breaks",
            code="invalid_csv",
            details={"field": "body", "line": reader.line_num},
        ) from exc
    return header, rows


def import_csv(session: Session, cipher: PiiCipher, workspace_id: str, text: str) -> dict[str, int]:
    header, rows = _parse(text)
    if len(rows) > MAX_ROWS:
        raise TooLarge(
            f"at most {MAX_ROWS} rows per import; this file has {len(rows)} — split it",
            code="too_many_rows",
            details={"field": "body", "rows": len(rows)},
        )
    known = attributes.defs(session, workspace_id)
    problems: list[dict[str, Any]] = []
    for col in header:
        if col not in BUILTIN and col not in known:
            problems.append(
                {"row": 1, "field": col,
                 "problem": "unknown column: not a contact field nor a defined attribute key"}
            )  # fmt: skip
    if "external_id" not in header:
        problems.append({"row": 1, "field": "external_id", "problem": "the column is required"})
    if len(set(header)) != len(header):
        problems.append({"row": 1, "field": "header", "problem": "a column is named twice"})
    if problems:
        _fail(problems, len(rows))
    tag_by_name = {
        t.name: t for t in session.scalars(select(Tag).where(Tag.workspace_id == workspace_id))
    }
    parsed: list[_Row] = []
    seen: dict[str, int] = {}
    for index, raw in enumerate(rows, start=2):
        cells = dict(zip(header, [c.strip() for c in raw], strict=False))
        if len(raw) > len(header):
            problems.append({"row": index, "field": "row", "problem": "more cells than columns"})
        try:
            external_id = check_external_id(cells.get("external_id", ""))
        except Invalid as exc:
            problems.append({"row": index, "field": "external_id", "problem": exc.message})
            continue
        if external_id in seen:
            problems.append(
                {"row": index, "field": "external_id",
                 "problem": f"repeats row {seen[external_id]}"}
            )  # fmt: skip
            continue
        seen[external_id] = index
        row = _Row(index, external_id)
        for name, normalize in (("phone", normalize_phone), ("email", normalize_email)):
            value = cells.get(name)
            if value:
                try:
                    row.pii[name] = normalize(value)
                    if name == "email":
                        row.pii["email_raw"] = value
                except Invalid:
                    problems.append(
                        {"row": index, "field": name, "problem": f"not a valid {name}: {value!r}"}
                    )
        for name in ("nickname", "avatar_url"):
            value = cells.get(name)
            if value:
                limit = 100 if name == "nickname" else 500
                if len(value) > limit:
                    problems.append(
                        {"row": index, "field": name, "problem": f"longer than {limit} characters"}
                    )
                row.pii[name] = value
        for key in header:
            if key in known and cells.get(key, "") != "":
                try:
                    row.attrs[key] = attributes.coerce(known[key].type, cells[key], key)
                except Invalid as exc:
                    problems.append({"row": index, "field": key, "problem": exc.message})
        for name in filter(None, (n.strip() for n in cells.get("tags", "").split("|"))):
            tag = tag_by_name.get(name)
            if tag is None:
                problems.append(
                    {"row": index, "field": "tags", "problem": f"no tag named {name!r}"}
                )
            elif tag.kind == "rule":
                problems.append(
                    {"row": index, "field": "tags", "problem": f"{name!r} is a rule tag"}
                )
            else:
                row.tag_ids.append(tag.id)
        parsed.append(row)
    if problems:
        _fail(problems, len(rows))
    return _write(session, cipher, workspace_id, parsed)


def _fail(problems: list[dict[str, Any]], rows: int) -> None:
    first = problems[0]
    raise Invalid(
        f"{len(problems)} problem(s) in the CSV, nothing was imported; first: row "
        f"{first['row']}, {first['field']}: {first['problem']}",
        code="invalid_csv",
        details={"rows": rows, "errors": problems[:MAX_ERRORS_LISTED],
                 "errors_total": len(problems)},
    )  # fmt: skip


def _write(
    session: Session, cipher: PiiCipher, workspace_id: str, parsed: list[_Row]
) -> dict[str, int]:
    now = utcnow()
    existing: dict[str, Contact] = {}
    ids = [r.external_id for r in parsed]
    for start in range(0, len(ids), 500):
        for c in session.scalars(
            select(Contact).where(
                Contact.workspace_id == workspace_id,
                Contact.external_id.in_(ids[start : start + 500]),
            )
        ):
            existing[c.external_id] = c
    created = 0
    by_tag: dict[str, list[str]] = {}
    attr_rows: list[tuple[str, dict[str, attributes.Columns | None]]] = []
    with_pii: list[Contact] = []
    for row in parsed:
        contact = existing.get(row.external_id)
        if contact is None:
            contact = Contact(
                id=new_id("ctc"), workspace_id=workspace_id, external_id=row.external_id,
                created_at=now, updated_at=now, orders_count=0, gmv_cents=0, invites_made=0,
                invites_qualified=0,
            )  # fmt: skip
            session.add(contact)
            created += 1
        _apply_pii(cipher, contact, row.pii)
        if row.pii.get("phone") or row.pii.get("email"):
            with_pii.append(contact)
        contact.updated_at = now
        for tag_id in row.tag_ids:
            by_tag.setdefault(tag_id, []).append(contact.id)
        if row.attrs:
            attr_rows.append((contact.id, row.attrs))
    session.flush()
    for contact in with_pii:
        identity.attach_pii_aliases(session, workspace_id, contact)
    for contact_id, values in attr_rows:
        attributes.write(session, workspace_id, contact_id, values)
    attributes.announce(session, workspace_id, [cid for cid, _ in attr_rows])
    for tag_id, contact_ids in by_tag.items():
        tags.add_tags(
            session, workspace_id, contact_ids, [tag_id], source="import", reason="csv import"
        )
    return {"rows": len(parsed), "created": created, "updated": len(parsed) - created}


def _apply_pii(cipher: PiiCipher, contact: Contact, pii: dict[str, str | None]) -> None:
    if pii.get("phone"):
        contact.phone_enc = cipher.encrypt(pii["phone"])
        contact.phone_hash = cipher.lookup_hash(pii["phone"])
    if pii.get("email"):
        contact.email_enc = cipher.encrypt(pii.get("email_raw") or pii["email"])
        contact.email_hash = cipher.lookup_hash(pii["email"])
    if pii.get("nickname"):
        set_nickname(cipher, contact, pii["nickname"])
    if pii.get("avatar_url"):
        contact.avatar_url = pii["avatar_url"]


# -- export ------------------------------------------------------------------------------------


def export_csv(
    session: Session,
    cipher: PiiCipher,
    workspace_id: str,
    f: repository.ContactFilter,
    *,
    may_see_pii: bool,
) -> Iterator[str]:
    known = attributes.defs(session, workspace_id)
    columns = ["id", "external_id"]
    if may_see_pii:
        columns += ["nickname", "phone", "email"]
    columns += [
        "first_channel", "last_channel", "first_seen_at", "last_seen_at", "orders_count",
        "gmv_cents", "last_order_at", "invites_made", "invites_qualified", "rfm_class", "tags",
        *known,
    ]  # fmt: skip
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(columns)
    yield "\ufeff" + buf.getvalue()
    stmt = repository.list_stmt(workspace_id, f).order_by(Contact.id)
    last = ""
    while True:
        page = list(session.scalars(stmt.where(Contact.id > last).limit(1000)))
        if not page:
            return
        last = page[-1].id
        ids = [c.id for c in page]
        tag_map = repository.tags_of(session, ids)
        attrs: dict[str, dict[str, Any]] = {cid: {} for cid in ids}
        for a in session.scalars(
            select(ContactAttribute).where(ContactAttribute.contact_id.in_(ids))
        ):
            if a.key in known:
                attrs[a.contact_id][a.key] = attributes.value_of(a, known[a.key].type)
        buf.seek(0)
        buf.truncate()
        for c in page:
            cells: list[Any] = [c.id, c.external_id]
            if may_see_pii:
                pii = display(cipher, c, may_see_pii=True)
                cells += [pii["nickname"], pii["phone"], pii["email"]]
            cells += [
                c.first_channel, c.last_channel, _iso(c.first_seen_at), _iso(c.last_seen_at),
                c.orders_count, c.gmv_cents, _iso(c.last_order_at), c.invites_made,
                c.invites_qualified, c.rfm_class, "|".join(t.name for _, t in tag_map[c.id]),
                *(attrs[c.id].get(k) for k in known),
            ]  # fmt: skip
            writer.writerow([neutralize(v) for v in cells])
        yield buf.getvalue()


def _iso(value: Any) -> str:
    return value.isoformat() if value is not None else ""
