"""Ingested events → contacts, set-based per batch (the event hooks' ``people`` consumer).

The hooks worker (``events/hooks.py``) hands this consumer the fresh events of a batch, in
arrival order, inside its transaction. For each workspace of the batch it:

1. checks every event in Python first (external id, visitor alias, ``$set`` against the
   attribute definitions read once): a bad ``$set`` is logged and dropped, the rest of the
   event still applies — as ``identify`` one event at a time did;
2. reads the contacts (by external id, then the survivors of merged ones), the visitor
   aliases and the custom attributes the batch names, one query per kind (per 500 keys);
3. replays the events in order over those rows in memory (``computed.touch`` /
   ``on_conversion`` on :class:`computed.Figures`, alias moves, attribute writes), so a person
   appearing several times in one batch ends exactly as if the events had been applied one
   after the other — a person not in the database yet starts from nothing, with a new id;
4. writes what changed: new contacts in one multi-row insert holding their figures already,
   aliases in one upsert and one executemany update, attributes in one insert/update/delete
   each, the other contacts' figures in one UPDATE per set of changed columns (only those),
   and one ``contact.attributes_changed`` for the workspace;
5. leaves the contact ids it resolved in the batch's memo (``kit.db.batch_memo``) for the
   consumers after it (campaigns), which then need no query of their own for them.

No savepoint and no ORM object per event: ~2 ms of CPU per event before, tens of µs now
(docs/benchmarks.md).
"""

from __future__ import annotations

import functools
import logging
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Table, bindparam, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from liebian.contacts import attributes, computed, repository
from liebian.contacts.models import Contact, ContactAlias, ContactAttribute
from liebian.contacts.service import check_external_id
from liebian.events.hooks import HookEvent
from liebian.events.schemas import EventIn
from liebian.kit.clock import utcnow
from liebian.kit.crypto import PiiCipher
from liebian.kit.db import batch_memo
from liebian.kit.errors import Invalid
from liebian.kit.ids import new_id
from liebian.kit.precompiled import executemany, fetch_all, update_by_key

log = logging.getLogger("liebian.contacts")

PURCHASE_EVENTS = frozenset({"purchase", "order_paid", "refund"})
CHUNK = 500  # keys per IN (…) list

_CONTACTS: Table = Contact.__table__  # type: ignore[assignment]
_ALIASES: Table = ContactAlias.__table__  # type: ignore[assignment]
_ATTRS: Table = ContactAttribute.__table__  # type: ignore[assignment]
# The contact columns this consumer reads and may write.
_FIGURES = (
    "first_seen_at",
    "last_seen_at",
    "first_channel",
    "last_channel",
    "orders_count",
    "gmv_cents",
    "last_order_at",
    "rfm_class",
)
_VALUE_COLUMNS = ("value_str", "value_num", "value_date", "value_bool")

Columns = dict[str, Any]


@dataclass(slots=True)
class _Step:
    """One event that changes a contact, checked."""

    event: HookEvent
    external_id: str
    visitor_raw: str | None  # as sent (the contact's first visitor id keeps it, [:128])
    visitor: str | None  # the alias value: stripped, [:128]
    checked: dict[str, Columns | None] | None  # $set values, validated
    buying: bool


@dataclass(slots=True)
class _Person:
    """A contact row as this batch sees it. ``before``: its figures as read (None: not in the
    database yet, inserted once the batch is replayed)."""

    id: str
    merged_into_id: str | None
    visitor_id: str | None
    figures: computed.Figures
    before: tuple[Any, ...] | None
    visitor_before: str | None

    def current(self) -> tuple[Any, ...]:
        f = self.figures
        return (f.first_seen_at, f.last_seen_at, f.first_channel, f.last_channel,
                f.orders_count, f.gmv_cents, f.last_order_at, f.rfm_class)  # fmt: skip

    def restart(self) -> None:
        """Back to the row as read (or as inserted), to replay the batch again."""
        self.figures = computed.Figures(*self.before) if self.before else computed.Figures()
        self.visitor_id = self.visitor_before


class PeopleConsumer:
    """Ingested events → contacts, applied by the event hooks worker (``events/hooks.py``:
    after the 202, in batches, once per event id, inside its transaction):

    - an event with ``user_id`` and ``visitor_id`` makes the visitor an alias of the contact;
    - ``properties["$set"]`` sets custom attributes (a bad one is logged and skipped: the
      event is stored and acknowledged already);
    - purchase / order_paid / refund update orders, GMV, last order and RFM (exactly once:
      the worker's markers see to it).

    ``select`` runs on the request path and skips (user, visitor) pairs this process has
    queued already (a bounded LRU), so the usual stream of events from known people is not
    written to the hooks spool twice. Pairs are not keyed by workspace: the same user id
    *and* browser visitor id in two workspaces would be queued once (the event store's
    identity map still gets both, from events/service.py).
    """

    name = "people"
    events = PURCHASE_EVENTS
    select_needs = "user_id"  # select() is false without one (events/hooks.py)

    def __init__(self, cipher: PiiCipher | None, size: int = 100_000) -> None:
        self.cipher = cipher
        self.size = size
        self._seen: OrderedDict[tuple[str, str], None] = OrderedDict()

    def select(self, event: EventIn) -> bool:
        user_id = event.get("user_id")
        if not user_id:
            return False
        props = event.get("properties")
        if isinstance(props, dict) and isinstance(props.get("$set"), dict):
            return True
        visitor_id = event.get("visitor_id")
        if not visitor_id or (user_id, visitor_id) in self._seen:
            return False
        self._seen[(user_id, visitor_id)] = None
        if len(self._seen) > self.size:
            self._seen.popitem(last=False)
        return True

    def __call__(self, session: Session, events: Sequence[HookEvent]) -> None:
        by_workspace: dict[str, list[HookEvent]] = {}
        for e in events:  # a person is in one workspace: their order is kept
            if e.user_id:
                by_workspace.setdefault(e.workspace_id, []).append(e)
        for workspace_id, batch in by_workspace.items():
            apply_people(session, workspace_id, batch, keep_visitor=self.cipher is not None)


def apply_people(
    session: Session, workspace_id: str, events: Sequence[HookEvent], *, keep_visitor: bool
) -> None:
    """Apply one workspace's events (in order) to its contacts, set-based (module docstring).
    ``keep_visitor``: fill a contact's first ``visitor_id`` (``contacts.upsert`` does so only
    when it has a cipher)."""
    steps = _checked_steps(session, workspace_id, events)
    if not steps:
        return
    now = utcnow()
    wanted = {s.external_id for s in steps}
    people = _people(session, workspace_id, wanted)
    new = {
        ext: _Person(new_id("ctc"), None, None, computed.Figures(), None, None)
        for ext in sorted(wanted - people.by_external.keys())
    }
    for ext, person in new.items():
        people.by_external[ext] = people.by_id[person.id] = person
    replay = _replay(session, workspace_id, steps, people, keep_visitor=keep_visitor, now=now)
    if new:
        # Inserted with what the batch made of them: no UPDATE after the INSERT.
        created = _insert_people(session, workspace_id, new, now)
        late = new.keys() - created
        if late:
            # Created meanwhile by a concurrent transaction (PostgreSQL): only contacts are
            # written so far. Replay the batch again over the rows as they now are (those
            # just inserted included: replaying them gives the same values, so they are
            # not written twice).
            for ext, person in new.items():
                del people.by_external[ext], people.by_id[person.id]
            for person in people.by_id.values():
                person.restart()
            for ext in created:  # in the database as inserted; replayed from nothing
                person = new[ext]
                person.before, person.visitor_before = person.current(), person.visitor_id
                person.figures, person.visitor_id = computed.Figures(), None
                people.by_external[ext] = people.by_id[person.id] = person
            _read_people(session, workspace_id, people, late)
            replay = _replay(
                session, workspace_id, steps, people, keep_visitor=keep_visitor, now=now
            )
    _save_aliases(session, workspace_id, replay.owners, replay.inserted, replay.moved, now)
    _save_attributes(session, workspace_id, replay.attr_before, replay.attr_rows)
    _save_people(session, people.by_id.values(), now)
    if replay.announced:
        attributes.announce(session, workspace_id, sorted(replay.announced))
    memo = batch_memo(session)
    if memo is not None:  # the other consumers of the batch need not look these up again
        known = memo.setdefault(("contact_ids", workspace_id), {})
        known.update((ext, p.id) for ext, p in people.by_external.items())


@dataclass(slots=True)
class _Replay:
    owners: dict[str, str]  # visitor alias value → contact id, after the batch
    inserted: set[str]  # alias values new to the workspace
    moved: set[str]  # alias values that changed hands
    attr_before: AttrRows
    attr_rows: AttrRows
    announced: set[str]  # contacts whose attributes changed


def _replay(
    session: Session,
    workspace_id: str,
    steps: list[_Step],
    people: _People,
    *,
    keep_visitor: bool,
    now: datetime,
) -> _Replay:
    """The batch's events, in order, over the people read (``people`` changes in place)."""
    # external id → the contact its events change (a merged contact's survivor).
    target: dict[str, _Person] = {}
    for ext, person in people.by_external.items():
        survivor = people.by_id.get(person.merged_into_id) if person.merged_into_id else None
        target[ext] = survivor or person
    owners = _visitor_owners(session, workspace_id, {s.visitor for s in steps if s.visitor})
    inserted: set[str] = set()
    moved: set[str] = set()
    attr_rows = _attribute_rows(session, [(target[s.external_id].id, s) for s in steps])
    attr_before = dict(attr_rows)
    announced: set[str] = set()
    touch, on_conversion = computed.touch, computed.on_conversion
    for step in steps:
        e, person = step.event, target[step.external_id]
        if keep_visitor and step.visitor_raw and person.visitor_id is None:
            person.visitor_id = step.visitor_raw[:128]
        visitor = step.visitor
        if visitor:
            owner = owners.get(visitor)
            if owner is None:
                inserted.add(visitor)
            elif owner != person.id and visitor not in inserted:
                moved.add(visitor)  # visitor and click ids follow the latest identify
            owners[visitor] = person.id
        if step.checked and _write_attributes(attr_rows, person.id, step.checked):
            announced.add(person.id)
        if step.buying:
            name = "refund" if e.event == "refund" else "purchase"
            on_conversion(person.figures, name, max(0, int(e.revenue or 0)), e.ts, now)
        else:
            touch(person.figures, e.ts)
    return _Replay(owners, inserted, moved, attr_before, attr_rows, announced)


def _checked_steps(session: Session, workspace_id: str, events: Sequence[HookEvent]) -> list[_Step]:
    steps: list[_Step] = []
    known: dict[str, Any] | None = None
    for e in events:
        if not e.user_id:
            continue
        props = e.properties or {}
        set_values = props.get("$set") if isinstance(props.get("$set"), dict) else None
        buying = e.event in PURCHASE_EVENTS
        if not (e.visitor_id or set_values or buying):
            continue
        try:
            external_id = check_external_id(e.user_id)
            visitor = _alias_value(e.visitor_id) if e.visitor_id else None
        except Invalid as exc:
            log.warning("event %s: contact not updated: %s", e.event_id, exc.message)
            continue
        checked = None
        if set_values:
            if known is None:
                known = dict(attributes.defs(session, workspace_id))
            try:
                checked = attributes.validate(known, set_values, "properties.$set")
            except Invalid as exc:  # keep the alias and the order, drop the $set
                log.warning("event %s: contact not updated: %s", e.event_id, exc.message)
        steps.append(_Step(e, external_id, e.visitor_id, visitor, checked, buying))
    return steps


def _alias_value(value: str) -> str:
    """As ``identity.attach`` keeps an alias value."""
    value = value.strip()[:128]
    if not value:
        raise Invalid("an alias value may not be empty", details={"field": "aliases.visitor_id"})
    return value


def _chunks(keys: Iterable[Any]) -> Iterable[list[Any]]:
    wanted = sorted(keys)
    for start in range(0, len(wanted), CHUNK):
        yield wanted[start : start + CHUNK]


# -- contacts ---------------------------------------------------------------------------------


@dataclass(slots=True)
class _People:
    by_external: dict[str, _Person]
    by_id: dict[str, _Person]


_CONTACT_COLUMNS = (
    _CONTACTS.c.external_id,
    _CONTACTS.c.id,
    _CONTACTS.c.merged_into_id,
    _CONTACTS.c.visitor_id,
    *(_CONTACTS.c[name] for name in _FIGURES),
)


def _person(row: Sequence[Any]) -> _Person:
    values = tuple(row[4:])
    return _Person(row[1], row[2], row[3], computed.Figures(*values), values, row[3])


def _people(session: Session, workspace_id: str, external_ids: set[str]) -> _People:
    """The batch's contacts that exist, and the survivors of merged ones."""
    people = _People({}, {})
    _read_people(session, workspace_id, people, external_ids)
    return people


def _read_people(
    session: Session, workspace_id: str, people: _People, external_ids: Iterable[str]
) -> None:
    """Add the contacts of ``external_ids`` that exist, and the survivors of merged ones."""

    def read(where: Any, keys: Iterable[str]) -> list[tuple[str, _Person]]:
        found = []
        for chunk in _chunks(keys):
            stmt = select(*_CONTACT_COLUMNS).where(
                _CONTACTS.c.workspace_id == workspace_id, where.in_(chunk)
            )
            found += [(row[0], _person(row)) for row in fetch_all(session, stmt)]
        return found

    survivors: set[str] = set()
    for ext, person in read(_CONTACTS.c.external_id, external_ids):
        people.by_external[ext] = people.by_id[person.id] = person
        if person.merged_into_id:
            survivors.add(person.merged_into_id)
    survivors -= people.by_id.keys()
    # By id only: their external ids are not among the batch's keys.
    for _ext, person in read(_CONTACTS.c.id, survivors) if survivors else ():
        people.by_id[person.id] = person


_INSERT_COLUMNS = ("id", "workspace_id", "external_id", "created_at", "updated_at",
                   "visitor_id", *_FIGURES)  # fmt: skip


def _insert_people(
    session: Session, workspace_id: str, new: dict[str, _Person], now: datetime
) -> set[str]:
    """Insert the batch's new contacts with their figures; the external ids that went in."""
    rows = [
        dict(zip(_INSERT_COLUMNS, (p.id, workspace_id, ext, now, now, p.visitor_id, *p.current()),
                 strict=True))
        for ext, p in new.items()
    ]  # fmt: skip
    created = repository.insert_missing(session, rows)
    return {ext for ext, contact_id in created.items() if new[ext].id == contact_id}


def _save_people(session: Session, people: Iterable[_Person], now: datetime) -> None:
    """The contacts the batch changed, one UPDATE per set of changed columns: a column that
    did not change is not written (SQLite rewrites the index entries of every column a
    statement sets, changed or not: ~3× the CPU of setting ``last_seen_at`` alone)."""
    shapes: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for p in people:
        if p.before is None:
            continue  # inserted as it is
        after = p.current()
        row = {
            name: value
            for name, value, was in zip(_FIGURES, after, p.before, strict=True)
            if value != was
        }
        if p.visitor_id != p.visitor_before:  # as contacts.upsert: a filled gap bumps updated_at
            row["visitor_id"] = p.visitor_id
            row["updated_at"] = now
        if row:
            row["b_key"] = p.id
            shapes.setdefault(tuple(row), []).append(row)
    for rows in shapes.values():
        update_by_key(session, _CONTACTS, "id", rows)
    if shapes:
        _expire(session, Contact, {r["b_key"] for rows in shapes.values() for r in rows})


def _expire(session: Session, model: type[Any], ids: set[str]) -> None:
    """ORM copies of rows written here (another consumer of the batch may hold some) are
    reloaded on their next use instead of going stale."""
    for obj in list(session.identity_map.values()):
        if isinstance(obj, model) and getattr(obj, "id", None) in ids:
            session.expire(obj)


# -- visitor aliases --------------------------------------------------------------------------


def _visitor_owners(session: Session, workspace_id: str, values: set[str]) -> dict[str, str]:
    owners: dict[str, str] = {}
    for chunk in _chunks(values):
        stmt = select(_ALIASES.c.value, _ALIASES.c.contact_id).where(
            _ALIASES.c.workspace_id == workspace_id,
            _ALIASES.c.kind == "visitor_id",
            _ALIASES.c.value.in_(chunk),
        )
        owners.update((value, owner) for value, owner in fetch_all(session, stmt))
    return owners


@functools.cache
def _upsert_alias_stmt(dialect: str) -> Any:
    """New aliases; one a concurrent transaction inserted first moves to ours, as
    ``identity.attach`` moves a visitor id."""
    make: Any = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}[dialect]
    stmt = make(_ALIASES)
    return stmt.on_conflict_do_update(
        index_elements=["workspace_id", "kind", "value"],
        set_={"contact_id": stmt.excluded.contact_id, "created_at": stmt.excluded.created_at},
        where=_ALIASES.c.contact_id != stmt.excluded.contact_id,
    )


_MOVE_ALIAS = (
    _ALIASES.update()
    .where(
        _ALIASES.c.workspace_id == bindparam("b_ws"),
        _ALIASES.c.kind == "visitor_id",
        _ALIASES.c.value == bindparam("b_value"),
    )
    .values(contact_id=bindparam("contact_id"), created_at=bindparam("created_at"))
)


def _save_aliases(
    session: Session,
    workspace_id: str,
    owners: dict[str, str],
    inserted: set[str],
    moved: set[str],
    now: datetime,
) -> None:
    if inserted:
        stmt = _upsert_alias_stmt(session.get_bind().dialect.name)
        executemany(
            session,
            stmt,
            [
                {"workspace_id": workspace_id, "kind": "visitor_id", "value": v,
                 "contact_id": owners[v], "created_at": now}
                for v in sorted(inserted)
            ],
        )  # fmt: skip
    if moved:
        executemany(
            session,
            _MOVE_ALIAS,
            [
                {"b_ws": workspace_id, "b_value": v, "contact_id": owners[v], "created_at": now}
                for v in sorted(moved)
            ],
        )


# -- custom attributes ------------------------------------------------------------------------

# (contact id, key) → the value columns, or None: no row.
AttrRows = dict[tuple[str, str], Columns | None]


def _attribute_rows(session: Session, steps: list[tuple[str, _Step]]) -> AttrRows:
    wanted = {(cid, key) for cid, s in steps if s.checked for key in s.checked}
    rows: AttrRows = dict.fromkeys(wanted)
    if not wanted:
        return rows
    keys = sorted({key for _, key in wanted})
    for chunk in _chunks({cid for cid, _ in wanted}):
        stmt = select(_ATTRS.c.contact_id, _ATTRS.c.key, *(_ATTRS.c[c] for c in _VALUE_COLUMNS))
        stmt = stmt.where(_ATTRS.c.contact_id.in_(chunk), _ATTRS.c.key.in_(keys))
        for row in session.execute(stmt):
            if (row[0], row[1]) in rows:
                rows[(row[0], row[1])] = dict(zip(_VALUE_COLUMNS, row[2:], strict=True))
    return rows


def _write_attributes(rows: AttrRows, contact_id: str, checked: dict[str, Columns | None]) -> bool:
    """``attributes.write`` on the batch's copy; True when anything changed."""
    changed = False
    for key, columns in checked.items():
        current = rows.get((contact_id, key))
        if columns is None:
            if current is not None:
                rows[(contact_id, key)] = None
                changed = True
        elif current is None or any(current.get(k) != v for k, v in columns.items()):
            rows[(contact_id, key)] = {**(current or {}), **columns}
            changed = True
    return changed


_UPDATE_ATTR = (
    _ATTRS.update()
    .where(_ATTRS.c.contact_id == bindparam("b_contact"), _ATTRS.c.key == bindparam("b_key"))
    .values({c: bindparam(c) for c in _VALUE_COLUMNS})
)
_DELETE_ATTR = _ATTRS.delete().where(
    _ATTRS.c.contact_id == bindparam("b_contact"), _ATTRS.c.key == bindparam("b_key")
)


def _save_attributes(
    session: Session, workspace_id: str, before: AttrRows, after: AttrRows
) -> None:
    inserts: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    deletes: list[dict[str, Any]] = []
    for (cid, key), now_value in sorted(after.items()):
        was = before.get((cid, key))
        if was == now_value:
            continue
        if now_value is None:
            deletes.append({"b_contact": cid, "b_key": key})
            continue
        full = {c: now_value.get(c) for c in _VALUE_COLUMNS}
        if was is None:
            inserts.append({"workspace_id": workspace_id, "contact_id": cid, "key": key, **full})
        else:
            updates.append({"b_contact": cid, "b_key": key, **full})
    if deletes:
        session.execute(_DELETE_ATTR, deletes)
    if updates:
        session.execute(_UPDATE_ATTR, updates)
    if inserts:
        session.execute(_ATTRS.insert(), inserts)
