"""A contact's timeline: the event store's events of the person (by their user ids and visitor
aliases, queried in the engine's SQL, paged there) merged with the OLTP records about them —
campaign joins, invites made and received, helps, rewards, tag changes — newest first.

Ordering key: (ts, key) descending, where key is ``e:<event_id>`` for events and
``o:<source>:<id>`` for records; the cursor is that key of the last item, made opaque. Each
source is asked for at most ``limit + 1`` items before the cursor, so a page costs one
bounded query per source whatever the history's length.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from liebian.contacts.models import Contact, ContactAlias, Tag, TagChange
from liebian.contacts.references import table
from liebian.events.store.base import EventStore
from liebian.kit.errors import Invalid

MAX_LIMIT = 200
_HIGHEST = "\U0010ffff"  # sorts after every event id: "events at this ts, all of them"


@dataclass(slots=True)
class Item:
    ts: datetime
    key: str
    source: str
    kind: str
    title: str
    ref_id: str
    campaign_id: str | None = None
    channel: str | None = None
    revenue: int | None = None
    currency: str | None = None
    data: dict[str, Any] = field(default_factory=dict)

    def out(self) -> dict[str, Any]:
        return {
            "ts": self.ts, "source": self.source, "kind": self.kind, "title": self.title,
            "ref_id": self.ref_id, "campaign_id": self.campaign_id, "channel": self.channel,
            "revenue": self.revenue, "currency": self.currency, "data": self.data,
        }  # fmt: skip


def encode_cursor(item: Item) -> str:
    raw = json.dumps([item.ts.isoformat(), item.key]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        ts_text, key = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        ts = datetime.fromisoformat(ts_text)
        if ts.tzinfo is None or not isinstance(key, str) or key[:2] not in ("e:", "o:"):
            raise ValueError
        return ts.astimezone(UTC), key
    except (ValueError, TypeError):
        raise Invalid(
            "cursor is not one this API gave out; pass next_cursor unchanged",
            code="bad_cursor",
            details={"field": "cursor"},
        ) from None


# Events that only mirror a record the timeline lists itself (tag changes: ``o:tag:…``).
RECORDED_ELSEWHERE = ("tag_added", "tag_removed")


def person_ids(session: Session, contact: Contact) -> tuple[list[str], list[str]]:
    """(user ids, visitor ids) the event store knows this person by: their external id and
    those of contacts merged into them; their visitor aliases."""
    users = [contact.external_id]
    users += list(
        session.scalars(select(Contact.external_id).where(Contact.merged_into_id == contact.id))
    )
    visitors = set(
        session.scalars(
            select(ContactAlias.value).where(
                ContactAlias.contact_id == contact.id, ContactAlias.kind == "visitor_id"
            )
        )
    )
    if contact.visitor_id:
        visitors.add(contact.visitor_id)
    return users, sorted(visitors)


def page(
    session: Session,
    store: EventStore | None,
    contact: Contact,
    *,
    cursor: str | None,
    limit: int,
) -> tuple[list[Item], str | None]:
    if not 1 <= limit <= MAX_LIMIT:
        raise Invalid(
            f"limit must be between 1 and {MAX_LIMIT}", code="bad_limit", details={"field": "limit"}
        )
    before = decode_cursor(cursor) if cursor else None
    items: list[Item] = []
    if store is not None:
        users, visitors = person_ids(session, contact)
        store_before = None
        if before is not None:
            bt, key = before
            store_before = (bt, key[2:] if key.startswith("e:") else _HIGHEST)
        for e in store.person_events(
            contact.workspace_id, users, visitors, before=store_before, limit=limit + 1,
            skip_events=RECORDED_ELSEWHERE,
        ):  # fmt: skip
            items.append(
                Item(
                    e.ts, f"e:{e.event_id}", "event", e.event, e.event, e.event_id,
                    campaign_id=e.campaign_id, channel=e.channel, revenue=e.revenue,
                    currency=e.currency, data=_props(e.properties),
                )
            )  # fmt: skip
    items += _records(session, contact, before, limit + 1)
    if before is not None:
        items = [i for i in items if (i.ts, i.key) < before]
    items.sort(key=lambda i: (i.ts, i.key), reverse=True)
    if len(items) > limit:
        items = items[:limit]
        return items, encode_cursor(items[-1])
    return items, None


def _props(raw: str | None) -> dict[str, Any]:
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _records(
    session: Session, contact: Contact, before: tuple[datetime, str] | None, n: int
) -> list[Item]:
    out: list[Item] = []

    def run(stmt: Any, ts_col: Any, id_col: Any) -> list[Any]:
        if before is not None:
            stmt = stmt.where(ts_col <= before[0])
        return list(session.execute(stmt.order_by(ts_col.desc(), id_col.desc()).limit(n)))

    p = table("participants")
    for pid, campaign_id, joined_at in run(
        select(p.c.id, p.c.campaign_id, p.c.joined_at).where(p.c.contact_id == contact.id),
        p.c.joined_at,
        p.c.id,
    ):
        out.append(
            Item(_utc(joined_at), f"o:campaign_join:{pid}", "campaign_join", "joined",
                 "参加活动", pid, campaign_id=campaign_id)
        )  # fmt: skip
    r = table("referrals")
    c = table("contacts")
    for rid, campaign_id, created_at, status, other in run(
        select(r.c.id, r.c.campaign_id, r.c.created_at, r.c.status, c.c.external_id)
        .join(c, c.c.id == r.c.referee_contact_id)
        .where(r.c.referrer_contact_id == contact.id),
        r.c.created_at,
        r.c.id,
    ):
        out.append(
            Item(_utc(created_at), f"o:invite:{rid}", "invite", status, "邀请好友", rid,
                 campaign_id=campaign_id, data={"referee_external_id": other})
        )  # fmt: skip
    for rid, campaign_id, created_at, status, other in run(
        select(r.c.id, r.c.campaign_id, r.c.created_at, r.c.status, c.c.external_id)
        .join(c, c.c.id == r.c.referrer_contact_id)
        .where(r.c.referee_contact_id == contact.id),
        r.c.created_at,
        r.c.id,
    ):
        out.append(
            Item(_utc(created_at), f"o:invited_by:{rid}", "invited_by", status, "被邀请",
                 rid, campaign_id=campaign_id, data={"referrer_external_id": other})
        )  # fmt: skip
    h = table("assist_helps")
    a = table("assists")
    for hid, assist_id, campaign_id, created_at in run(
        select(h.c.id, h.c.assist_id, a.c.campaign_id, h.c.created_at)
        .join(a, a.c.id == h.c.assist_id)
        .where(h.c.helper_contact_id == contact.id),
        h.c.created_at,
        h.c.id,
    ):
        out.append(
            Item(_utc(created_at), f"o:help:{hid}", "help", "helped", "助力好友", hid,
                 campaign_id=campaign_id, data={"assist_id": assist_id})
        )  # fmt: skip
    w = table("reward_entries")
    for wid, campaign_id, created_at, kind, name, amount, currency, status in run(
        select(
            w.c.id, w.c.campaign_id, w.c.created_at, w.c.kind, w.c.name, w.c.amount,
            w.c.currency, w.c.status,
        ).where(w.c.contact_id == contact.id),
        w.c.created_at,
        w.c.id,
    ):  # fmt: skip
        out.append(
            Item(_utc(created_at), f"o:reward:{wid}", "reward", kind, name or "奖励", wid,
                 campaign_id=campaign_id, revenue=amount, currency=currency,
                 data={"status": status})
        )  # fmt: skip
    for change, tag_name in run(
        select(TagChange, Tag.name)
        .outerjoin(Tag, Tag.id == TagChange.tag_id)
        .where(TagChange.contact_id == contact.id),
        TagChange.at,
        TagChange.id,
    ):
        title = ("添加标签 " if change.change == "added" else "移除标签 ") + (
            tag_name or "(已删除)"
        )
        out.append(
            Item(_utc(change.at), f"o:tag:{change.id}", "tag", change.change, title, change.id,
                 data={"tag_id": change.tag_id, "reason": change.reason})
        )  # fmt: skip
    return out


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
