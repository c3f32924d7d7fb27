"""A campaign's live numbers (实时数据看板) and its fission tree.

Numbers come from two places, each the source of truth for its part:

- the event store (``campaigns/fission_events.py`` writes every action there) for the people
  counts, the funnel, and the breakdowns by channel and by day — SQL run inside DuckDB or
  ClickHouse, never rows pulled into Python; fresh within the flusher's interval (1 s by
  default) plus a segment's seal (≤ 1 s);
- the OLTP ledger for money paid out (reward cost), and the referrals table for the tree.

Definitions (each a distinct person count unless it says otherwise; ``person`` is
``coalesce(user_id, visitor_id)``):

- 看到 seen: page_view · 参与 participants: campaign_join · 分享 sharers: share
- 好友点击 friend clicks: invite_click · 好友参与 friend joins: invite (one per referral)
- 好友转化 friend conversions: invite_qualified (the campaign's qualifying action happened)
- 分享率 = sharers / participants · 点击率 = friend clicks / sharers
- 转化率 = friend conversions / sharers, and / friend clicks
- K-factor = friend joins / participants · GMV = revenue of the campaign's events (group-buy
  orders, purchases sent with its campaign_id) · reward cost = coupon and cash rewards not
  reversed (分) · ROI = (GMV − cost) / cost · CAC = cost / friend joins (new people brought)
"""

from __future__ import annotations

import threading
from collections import OrderedDict, defaultdict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from liebian.analytics.sql import Sql, check_tz
from liebian.campaigns import repository
from liebian.campaigns.models import Assist, Campaign, Group, Participant, Referral
from liebian.contacts import service as contacts
from liebian.contacts.models import Contact
from liebian.events.store.base import EventStore
from liebian.kit.crypto import PiiCipher, mask_name
from liebian.kit.errors import Invalid, NotFound
from liebian.rewards.models import RewardEntry

# (key, 中文) in funnel order, with the column of ``_COUNTS`` that measures the step.
FUNNEL = (
    ("seen", "看到"),
    ("participants", "参与"),
    ("sharers", "分享"),
    ("friend_clicks", "好友点击"),
    ("friend_joins", "好友参与"),
    ("friend_conversions", "好友转化"),
)
_COUNTS = ("seen", "participants", "sharers", "shares", "friend_clicks", "friend_joins",
           "friend_conversions", "gmv")  # fmt: skip


def _rate(num: int, den: int) -> float | None:
    return round(num / den, 4) if den else None


def event_counts(
    store: EventStore, workspace_id: str, campaign_id: str | list[str], *, by: str | None, tz: str
) -> list[tuple[str, dict[str, int]]]:
    """The campaign's action counts, in total (``by=None``), per ``channel`` or per local
    ``day``; or, with a list of ids and ``by="campaign"``, each campaign's totals (the
    comparison with earlier campaigns, same definitions).

    Read from the rollup the event load keeps (``events/store/campaign_rollup.py``: a few rows
    per campaign); days in a zone other than the workspace's rollup zone are computed from the
    events (``counts_from_events``), with the same answer."""
    tz = check_tz(tz)
    if by not in (None, "channel", "day", "campaign"):
        raise ValueError(by)
    ids = [campaign_id] if isinstance(campaign_id, str) else campaign_id
    if not ids:
        return []
    if by == "day" and store.rollup_zone(workspace_id) != tz:
        return counts_from_events(store, workspace_id, campaign_id, by=by, tz=tz)
    return store.campaign_counts(workspace_id, ids, by=by)


def counts_from_events(
    store: EventStore, workspace_id: str, campaign_id: str | list[str], *, by: str | None, tz: str
) -> list[tuple[str, dict[str, int]]]:
    """``event_counts`` computed from the events: one GROUP BY of the campaign's events in
    the engine (the rollup's reference in the conformance tests)."""
    tz = check_tz(tz)
    sql = Sql(store)
    person = "coalesce(nullif(e.user_id, ''), e.visitor_id)"
    if by is None:
        key = "''"
    elif by == "channel":
        key = sql.col("channel")
    elif by == "day":
        key = sql.date_str(sql.local_date("e.ts", tz))
    elif by == "campaign":
        key = "e.campaign_id"
    else:
        raise ValueError(by)
    ids = [campaign_id] if isinstance(campaign_id, str) else campaign_id
    if not ids:
        return []
    which = (
        f"e.campaign_id = {sql.p(ids[0])}" if len(ids) == 1 else sql.in_list("e.campaign_id", ids)
    )

    def people(event: str) -> str:
        return sql.uniq_if(person, f"e.event = {sql.p(event)}")

    def count(event: str) -> str:
        return sql.count_if(f"e.event = {sql.p(event)}")

    money_events = ("reward_issued", "reward_reversed")
    gmv = sql.sum_if(sql.col("revenue"), f"NOT {sql.in_list('e.event', list(money_events))}")
    where = (
        f" FROM {sql.events} e WHERE e.workspace_id = {sql.p(workspace_id)}"
        f" AND {which} AND NOT e.is_bot"
    )
    if not sql.ch:
        # DuckDB: one GROUP BY (key, event, person) and then plain counts over its rows costs
        # ~3× less CPU than seven count(DISTINCT …) FILTER aggregates side by side (each its
        # own hash table); same figures (bench/bench_dashboard.py, docs/benchmarks.md).
        def people_of(event: str) -> str:
            return f"count(*) FILTER (WHERE ev = {sql.p(event)} AND person IS NOT NULL)"

        def count_of(event: str) -> str:
            return f"coalesce(sum(c) FILTER (WHERE ev = {sql.p(event)}), 0)"

        # events.person_key is the stored hash of the same coalesce (duckdb_store.py): an
        # integer to group on instead of a string (~1.5× less CPU).
        person_key = (
            "CASE WHEN nullif(e.user_id, '') IS NULL AND e.visitor_id IS NULL THEN NULL"
            " ELSE e.person_key END"
        )
        inner = (
            f"SELECT {key} AS k, e.event AS ev, {person_key} AS person, count(*) AS c,"
            f" {gmv} AS rev"
            f"{where} GROUP BY k, ev, person"
        )
        rows = sql.run(
            f"SELECT k, {people_of('page_view')}, {people_of('campaign_join')},"
            f" {people_of('share')}, {count_of('share')}, {people_of('invite_click')},"
            f" {count_of('invite')}, {count_of('invite_qualified')}, coalesce(sum(rev), 0)"
            f" FROM ({inner}) p GROUP BY k ORDER BY k"
        )
        return [
            (str(r[0] or ""), dict(zip(_COUNTS, (int(v or 0) for v in r[1:]), strict=True)))
            for r in rows
        ]
    select_ = (
        f"SELECT {key} AS k, {people('page_view')}, {people('campaign_join')},"
        f" {people('share')}, {count('share')}, {people('invite_click')}, {count('invite')},"
        f" {count('invite_qualified')}, {gmv}"
        f"{where} GROUP BY k ORDER BY k"
    )
    rows = sql.run(select_)
    return [
        (str(r[0] or ""), dict(zip(_COUNTS, (int(v or 0) for v in r[1:]), strict=True)))
        for r in rows
    ]


def reward_cost(session: Session, campaign_id: str) -> int:
    """Coupon and cash rewards of the campaign that were not reversed, in 分."""
    total = session.scalar(
        select(func.coalesce(func.sum(RewardEntry.amount), 0)).where(
            RewardEntry.campaign_id == campaign_id,
            RewardEntry.kind.in_(("coupon", "cash")),
            RewardEntry.status != "reversed",
        )
    )
    return int(total or 0)


def _figures(c: dict[str, int], cost: int | None) -> dict[str, Any]:
    out: dict[str, Any] = dict(c)
    out["share_rate"] = _rate(c["sharers"], c["participants"])
    out["click_rate"] = _rate(c["friend_clicks"], c["sharers"])
    out["conversion_rate_per_share"] = _rate(c["friend_conversions"], c["sharers"])
    out["conversion_rate_per_click"] = _rate(c["friend_conversions"], c["friend_clicks"])
    out["k_factor"] = _rate(c["friend_joins"], c["participants"])
    if cost is not None:
        out["reward_cost"] = cost
        out["roi"] = _rate(c["gmv"] - cost, cost)
        out["cac"] = round(cost / c["friend_joins"]) if c["friend_joins"] else None
    return out


def dashboard(
    session: Session, store: EventStore, campaign: Campaign, *, tz: str
) -> dict[str, Any]:
    empty = dict.fromkeys(_COUNTS, 0)
    totals_rows = event_counts(store, campaign.workspace_id, campaign.id, by=None, tz=tz)
    totals = totals_rows[0][1] if totals_rows else empty
    cost = reward_cost(session, campaign.id)
    return {
        "campaign_id": campaign.id,
        "tz": tz,
        "totals": _figures(totals, cost),
        "funnel": [
            {
                "key": key,
                "label": label,
                "people": totals[key],
                "rate_from_previous": _rate(totals[key], totals[FUNNEL[i - 1][0]]) if i else None,
            }
            for i, (key, label) in enumerate(FUNNEL)
        ],
        "by_channel": [
            {"channel": k or "(direct)", **_figures(v, None)}
            for k, v in event_counts(store, campaign.workspace_id, campaign.id, by="channel", tz=tz)
        ],
        "by_day": [
            {"day": k, **_figures(v, None)}
            for k, v in event_counts(store, campaign.workspace_id, campaign.id, by="day", tz=tz)
        ],
        "compare": compare(session, store, campaign, tz=tz),
    }


COMPARE_LIMIT = 5


def compare(
    session: Session, store: EventStore, campaign: Campaign, *, tz: str
) -> list[dict[str, Any]]:
    """This campaign beside the workspace's earlier campaigns of the same type (the latest
    ``COMPARE_LIMIT`` created before it), each with the same totals and definitions as the
    dashboard: one engine query grouped by campaign, one ledger query."""
    earlier = session.execute(
        select(Campaign.id, Campaign.name, Campaign.starts_at, Campaign.status)
        .where(
            Campaign.workspace_id == campaign.workspace_id,
            Campaign.type == campaign.type,
            Campaign.id != campaign.id,
            Campaign.created_at <= campaign.created_at,
        )
        .order_by(Campaign.created_at.desc(), Campaign.id.desc())
        .limit(COMPARE_LIMIT)
    ).all()
    rows = [(campaign.id, campaign.name, campaign.starts_at, campaign.status), *earlier]
    ids = [r[0] for r in rows]
    counts = dict(event_counts(store, campaign.workspace_id, ids, by="campaign", tz=tz))
    costs = dict(
        session.execute(
            select(RewardEntry.campaign_id, func.coalesce(func.sum(RewardEntry.amount), 0))
            .where(
                RewardEntry.campaign_id.in_(ids),
                RewardEntry.kind.in_(("coupon", "cash")),
                RewardEntry.status != "reversed",
            )
            .group_by(RewardEntry.campaign_id)
        ).all()
    )
    empty = dict.fromkeys(_COUNTS, 0)
    return [
        {"campaign_id": cid, "name": name, "starts_at": starts, "status": status,
         "current": cid == campaign.id,
         **_figures(counts.get(cid, empty), int(costs.get(cid, 0) or 0))}
        for cid, name, starts, status in rows
    ]  # fmt: skip


# ── the fission tree (who brought whom), from OLTP referrals ───────────────────────────────


@dataclass(slots=True)
class _Forest:
    children: dict[str | None, list[str]]
    descendants: dict[str, int]
    depth: dict[str, int]


# Forests built recently, per campaign, with what they were built from: a level expanded, the
# next page or the dashboard opened again re-validate with one aggregate instead of reading
# and linking every participant (0.8 s of CPU at 100,000). Bounded; any new participant or
# new binding to a referrer changes the aggregate.
_FORESTS: OrderedDict[str, tuple[tuple[Any, ...], _Forest]] = OrderedDict()
_FORESTS_KEPT = 16
_FORESTS_LOCK = threading.Lock()


def _forest(session: Session, campaign_id: str) -> _Forest:
    """Every participant under its referrer (roots under None), reused while the campaign's
    participants are what it was built from (count, newest id, latest binding)."""
    stamp = tuple(
        session.execute(
            select(func.count(), func.max(Participant.id), func.max(Participant.bound_at)).where(
                Participant.campaign_id == campaign_id
            )
        ).one()
    )
    with _FORESTS_LOCK:
        held = _FORESTS.get(campaign_id)
        if held is not None and held[0] == stamp:
            _FORESTS.move_to_end(campaign_id)
            return held[1]
    forest = _build_forest(session, campaign_id)
    with _FORESTS_LOCK:
        _FORESTS[campaign_id] = (stamp, forest)
        _FORESTS.move_to_end(campaign_id)
        while len(_FORESTS) > _FORESTS_KEPT:
            _FORESTS.popitem(last=False)
    return forest


def _build_forest(session: Session, campaign_id: str) -> _Forest:
    """Every participant under its referrer (roots under None). One read of two id columns
    per participant; subtree sizes and depths computed without recursion."""
    rows = session.execute(
        select(Participant.id, Participant.referrer_participant_id).where(
            Participant.campaign_id == campaign_id
        )
    ).all()
    ids = {pid for pid, _ in rows}
    children: dict[str | None, list[str]] = defaultdict(list)
    parent: dict[str, str | None] = {}
    for pid, ref in rows:
        up = ref if ref in ids and ref != pid else None
        parent[pid] = up
        children[up].append(pid)
    depth: dict[str, int] = {}
    order: list[str] = []
    stack = [(pid, 1) for pid in children.get(None, [])]
    while stack:
        pid, d = stack.pop()
        if pid in depth:
            continue
        depth[pid] = d
        order.append(pid)
        stack.extend((c, d + 1) for c in children.get(pid, []))
    descendants = dict.fromkeys(order, 0)
    for pid in reversed(order):
        up = parent[pid]
        if up is not None and up in descendants:
            descendants[up] += descendants[pid] + 1
    return _Forest(children=children, descendants=descendants, depth=depth)


def tree(
    session: Session,
    cipher: PiiCipher,
    campaign: Campaign,
    *,
    parent: str | None,
    offset: int,
    limit: int,
) -> dict[str, Any]:
    """One level of the tree: ``parent``'s direct invitees (roots when None), widest branch
    first, paged; plus the campaign's depth and its widest branches."""
    forest = _forest(session, campaign.id)
    if parent is not None and parent not in forest.depth:
        raise NotFound(f"no participant {parent!r} in this campaign", code="participant_not_found")
    if offset < 0:
        raise Invalid("cursor must be a cursor this API gave out", code="bad_cursor")
    level = sorted(forest.children.get(parent, []), key=lambda p: (-forest.descendants[p], p))
    page = level[offset : offset + limit]
    nodes = repository.by_ids(session, Participant, set(page))
    people = repository.by_ids(session, Contact, {n.contact_id for n in nodes.values()})
    status = dict(
        session.execute(
            select(Referral.referee_participant_id, Referral.status).where(
                Referral.campaign_id == campaign.id,
                Referral.referee_participant_id.in_(page),
                Referral.status != "superseded",
            )
        ).all()
    ) if page else {}  # fmt: skip

    def node(pid: str) -> dict[str, Any]:
        p = nodes[pid]
        contact = people.get(p.contact_id)
        return {
            "participant_id": pid, "external_id": contact.external_id if contact else None,
            "nickname": contacts.public_nickname(cipher, contact), "channel": p.channel,
            "joined_at": p.joined_at, "depth": forest.depth.get(pid, 1),
            "children": len(forest.children.get(pid, [])), "descendants": forest.descendants.get(pid, 0),
            "referral_status": status.get(pid),
        }  # fmt: skip

    widest = sorted(
        (p for p in forest.depth if forest.children.get(p)),
        key=lambda p: (-len(forest.children[p]), p),
    )[:5]
    nodes.update(repository.by_ids(session, Participant, set(widest) - set(nodes)))
    people.update(
        repository.by_ids(session, Contact, {n.contact_id for n in nodes.values()} - set(people))
    )
    nxt = offset + limit if offset + limit < len(level) else None
    return {
        "campaign_id": campaign.id,
        "parent": parent,
        "participants": len(forest.depth),
        "max_depth": max(forest.depth.values(), default=0),
        "widest": [node(p) for p in widest],
        "items": [node(p) for p in page],
        "next_cursor": str(nxt) if nxt is not None else None,
    }


# ── the campaign page's lists: participants (search, status) and groups/assists ────────────


def participants(
    session: Session,
    cipher: PiiCipher,
    campaign: Campaign,
    *,
    q: str | None,
    status: str | None,
    offset: int,
    limit: int,
) -> dict[str, Any]:
    """The campaign's participants, newest first: ``q`` matches the start of the brand's
    external id; ``status`` is how they came in (their referral's state, or ``direct``)."""
    if offset < 0:
        raise Invalid("cursor must be a cursor this API gave out", code="bad_cursor")
    referral = (
        select(Referral.referee_participant_id, Referral.status)
        .where(Referral.campaign_id == campaign.id, Referral.status != "superseded")
        .subquery()
    )
    invites = (
        select(Participant.referrer_participant_id.label("pid"), func.count().label("n"))
        .where(Participant.campaign_id == campaign.id)
        .group_by(Participant.referrer_participant_id)
        .subquery()
    )
    stmt = (
        select(Participant, Contact.external_id, Contact.nickname_enc, referral.c.status,
               func.coalesce(invites.c.n, 0))
        .join(Contact, Contact.id == Participant.contact_id)
        .outerjoin(referral, referral.c.referee_participant_id == Participant.id)
        .outerjoin(invites, invites.c.pid == Participant.id)
        .where(Participant.campaign_id == campaign.id)
    )  # fmt: skip
    if q:
        escaped = q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        stmt = stmt.where(Contact.external_id.like(escaped + "%", escape="\\"))
    if status == "direct":
        stmt = stmt.where(referral.c.status.is_(None))
    elif status:
        stmt = stmt.where(referral.c.status == status)
    rows = session.execute(
        stmt.order_by(Participant.joined_at.desc(), Participant.id.desc())
        .offset(offset)
        .limit(limit + 1)
    ).all()
    items = [
        {"participant_id": p.id, "external_id": ext,
         "nickname": mask_name(cipher.decrypt(nick)) or "好友", "channel": p.channel,
         "joined_at": p.joined_at, "referrer_participant_id": p.referrer_participant_id,
         "status": ref_status or "direct", "invites": int(n), "config_version": p.config_version}
        for p, ext, nick, ref_status, n in rows[:limit]
    ]  # fmt: skip
    nxt = str(offset + limit) if len(rows) > limit else None
    return {"items": items, "next_cursor": nxt}


def activities(session: Session, campaign: Campaign, *, status: str | None) -> dict[str, Any]:
    """Group-buy groups or assists of the campaign (open ones first), latest 100."""
    if campaign.type == "group_buy":
        gstmt = select(Group).where(Group.campaign_id == campaign.id)
        if status:
            gstmt = gstmt.where(Group.status == status)
        groups = session.scalars(gstmt.order_by(Group.created_at.desc()).limit(100)).all()
        leaders = repository.by_ids(session, Contact, {g.leader_contact_id for g in groups})
        items = [
            {"id": g.id, "kind": "group", "owner": getattr(leaders.get(g.leader_contact_id), "external_id", None),
             "status": g.status, "done": g.member_count, "needed": g.size, "price": g.price,
             "expires_at": g.expires_at, "created_at": g.created_at}
            for g in groups
        ]  # fmt: skip
    elif campaign.type == "assist":
        astmt = select(Assist).where(Assist.campaign_id == campaign.id)
        if status:
            astmt = astmt.where(Assist.status == status)
        found = session.scalars(astmt.order_by(Assist.created_at.desc()).limit(100)).all()
        owners = repository.by_ids(session, Contact, {a.owner_contact_id for a in found})
        items = [
            {"id": a.id, "kind": "assist", "owner": getattr(owners.get(a.owner_contact_id), "external_id", None),
             "status": a.status, "done": a.helpers_count, "needed": a.helpers_required,
             "price": a.price_now, "expires_at": a.expires_at, "created_at": a.created_at}
            for a in found
        ]  # fmt: skip
    else:
        items = []
    items.sort(key=lambda i: (i["status"] != "open",))
    return {"campaign_id": campaign.id, "items": items}
