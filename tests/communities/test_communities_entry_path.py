"""The entry page's hot path (communities/entry.py) decides exactly as service.enter does.

Twin communities get the same scans, one through ``entry.decide`` (the hot path), one through
``service.enter`` (the ORM path): the member rows, the contacts, their attributes, the events
and the bus topics must agree. On SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
from datetime import date
from typing import Any

from sqlalchemy import select

from liebian.communities import entry, events, service
from liebian.communities.models import Community, CommunityGroup, CommunityMember
from liebian.communities.schemas import CommunityCreate, GroupCreate
from liebian.contacts import attributes
from liebian.contacts.models import Contact, ContactAlias
from liebian.kit.auth import Principal, Role
from liebian.kit.db import session_scope
from liebian.kit.errors import Invalid
from liebian.workspaces.service import create_workspace

TODAY = date(2026, 12, 2)


def _community(session: Any, me: Principal, name: str) -> str:
    c = service.create(session, me, CommunityCreate.model_validate({
        "name": name, "threshold": "screening", "alert_below": 3,
        "tiers": [
            {"key": "t03", "name": "0–3", "age": {"question": "b", "min_months": -12, "max_months": 36}},
            {"key": "t38", "name": "3–8", "age": {"question": "b", "min_months": 36, "max_months": 96}},
            {"key": "bj", "name": "北京"},
        ],
        "screening": [
            {"key": "b", "label": "宝宝生日", "type": "date", "attribute": "baby_birthday"},
            {"key": "city", "label": "城市", "type": "single", "options": ["北京", "上海"],
             "attribute": "city"},
            {"key": "topics", "label": "话题", "type": "multiple", "options": ["辅食", "睡眠"],
             "required": False},
        ],
        "routing": [{"question": "city", "values": ["北京"], "tier": "bj"}],
    }))  # fmt: skip
    for tier, platform in (("t03", "wechat"), ("t38", "wechat"), ("bj", "wecom")):
        service.create_group(
            session, me, c.id,
            GroupCreate(name=f"{name}-{tier}", tier=tier, capacity=2, platform=platform),
        )  # fmt: skip
    return c.id


SCANS = [
    ("v:a", "a", {"b": "2025-03-01", "city": "上海", "topics": ["辅食", "睡眠"]}),  # 0–3
    ("v:b", "b", {"b": "2021-01-01", "city": "上海"}),  # 3–8
    ("v:c", "c", {"b": "2025-03-01", "city": "北京"}),  # 北京 by rule, a WeCom group
    ("v:d", "d", {"b": "2025-05-01", "city": "上海"}),  # 0–3, the group's last place: alert
    ("v:e", "e", {"b": "2025-05-01", "city": "上海"}),  # 0–3 full: refused
    ("v:a", "a", {"b": "2025-03-01", "city": "上海"}),  # a re-scan: the same group
]


def _outcome(runtime: Any, community_id: str, lean: bool) -> list[Any]:
    out: list[Any] = []
    prefix = "lean" if lean else "orm"  # each path meets visitors of its own
    for _holder, vid, answers in SCANS:
        who = service.Entrant(f"v:{prefix}{vid}", None, None, f"{prefix}{vid}", "wechat")
        try:
            with session_scope(runtime.sessions) as session:
                if lean:
                    placed = entry.decide(
                        session, runtime.cipher, community_id, who, answers, None, TODAY
                    )
                    out.append((placed.group_name.split("-")[1], placed.tier, placed.new))
                else:
                    community = session.get(Community, community_id)
                    routed = service.enter(
                        session, runtime.cipher, community, who, answers, None, TODAY
                    )
                    out.append((routed.group.name.split("-")[1], routed.member.tier, routed.new))
        except service.EntryRefused as exc:
            out.append(exc.code)
    return out


def _state(runtime: Any, community_id: str, prefix: str = "") -> dict[str, Any]:
    with session_scope(runtime.read_sessions) as session:
        members = session.scalars(
            select(CommunityMember)
            .where(CommunityMember.community_id == community_id)
            .order_by(CommunityMember.holder)
        ).all()
        rows = []
        for m in members:
            if m.contact_id is None:  # no answers: no contact
                rows.append((m.holder, m.status, m.scene, m.tier))
                continue
            contact = session.get(Contact, m.contact_id)
            assert contact is not None
            alias = session.scalar(
                select(ContactAlias.value).where(
                    ContactAlias.contact_id == contact.id, ContactAlias.kind == "visitor_id"
                )
            )
            rows.append((
                m.holder.replace(prefix, ""), m.status, m.scene, m.tier, m.tier_source, m.answers,
                m.joined_at is not None, contact.external_id.replace(prefix, ""),
                (contact.visitor_id or "").replace(prefix, ""), (alias or "").replace(prefix, ""),
                attributes.values_of(session, contact.workspace_id, contact.id),
            ))  # fmt: skip
        groups = sorted(
            (g.name.split("-")[-1], g.members, g.status)
            for g in session.scalars(
                select(CommunityGroup).where(CommunityGroup.community_id == community_id)
            )
        )
        return {"members": rows, "groups": groups}


def test_hot_path_and_orm_path_agree(runtime: Any) -> None:
    events.install(runtime)
    seen: list[tuple[str, Any]] = []
    for topic in (service.MEMBER_JOINED, service.SCREENING_ANSWERED,
                  attributes.ATTRIBUTES_CHANGED, "community.alert"):  # fmt: skip
        runtime.bus.subscribe(topic, lambda p, t=topic: seen.append((t, p)))
    with session_scope(runtime.sessions) as session:
        ws = create_workspace(session, "热路径").id
        attributes.define(session, ws, "baby_birthday", "date", "宝宝生日")
        attributes.define(session, ws, "city", "string", "城市")
        me = Principal(ws, Role.operator)
        lean_id, orm_id = _community(session, me, "快"), _community(session, me, "慢")

    lean = _outcome(runtime, lean_id, lean=True)
    lean_seen, seen[:] = list(seen), []
    orm = _outcome(runtime, orm_id, lean=False)
    assert lean == orm == [
        ("t03", "t03", True), ("t38", "t38", True), ("bj", "bj", True), ("t03", "t03", True),
        "no_places", ("t03", "t03", False),
    ]  # fmt: skip

    a, b = _state(runtime, lean_id, "lean"), _state(runtime, orm_id, "orm")
    assert a == b
    assert a["groups"] == [("bj", 1, "open"), ("t03", 2, "full"), ("t38", 1, "open")]
    by_holder = {r[0]: r for r in a["members"]}
    assert by_holder["v:a"][1:5] == ("joined", "screening", "t03", "age")
    assert by_holder["v:c"][1] == "routed"  # a WeCom group: joined when WeCom says so
    assert by_holder["v:a"][7:10] == ("visitor:a", "a", "a")
    assert by_holder["v:a"][10] == {"baby_birthday": date(2025, 3, 1), "city": "上海"}

    def topics(items: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
        return sorted(
            (t, p.get("tier") or p.get("kind") or len(p.get("contact_ids", []))) for t, p in items
        )

    assert topics(lean_seen) == topics(seen)
    assert sum(t == service.MEMBER_JOINED for t, _ in lean_seen) == 3  # the two WeChat tiers
    assert sum(t == "community.alert" for t, _ in lean_seen) == 1


def test_hot_path_writes_nothing_for_a_wrong_answer(runtime: Any) -> None:
    with session_scope(runtime.sessions) as session:
        ws = create_workspace(session, "热路径错").id
        attributes.define(session, ws, "baby_birthday", "date", "宝宝生日")
        attributes.define(session, ws, "city", "string", "城市")
        cid = _community(session, Principal(ws, Role.operator), "错")
    who = service.Entrant("v:x", None, None, "x", None)
    for bad in (
        {"b": "明天", "city": "上海"},
        {"b": "2025-01-01", "city": "广州"},
        {"b": "2025-01-01"},
    ):
        try:
            with session_scope(runtime.sessions) as session:
                entry.decide(session, runtime.cipher, cid, who, bad, None, TODAY)
        except Invalid as exc:
            assert exc.status == 422 and exc.details["field"].startswith("answers.")
        else:
            raise AssertionError(f"{bad} was accepted")
    assert _state(runtime, cid)["members"] == []
    assert all(m == 0 for _, m, _ in _state(runtime, cid)["groups"])


def test_entry_run_commits_through_the_group_commit(runtime: Any) -> None:
    """entry.run: the group commit's writer on SQLite, a transaction each on PostgreSQL —
    every decision committed before its answer, none over capacity."""
    with session_scope(runtime.sessions) as session:
        ws = create_workspace(session, "批量").id
        me = Principal(ws, Role.operator)
        c = service.create(session, me, CommunityCreate(name="开放群", alert_below=0))
        for i in range(3):
            service.create_group(session, me, c.id, GroupCreate(name=f"群{i}", capacity=5))
        cid = c.id

    async def scan(i: int) -> Any:
        who = service.Entrant(f"v:p{i}", None, None, f"p{i}", None)
        try:
            return await entry.run(
                runtime,
                lambda s: entry.decide(s, runtime.cipher, cid, who, {}, None, TODAY),
            )
        except service.EntryRefused as exc:
            return exc.code

    async def all_scans() -> list[Any]:
        return await asyncio.gather(*(scan(i) for i in range(20)))

    results = asyncio.run(all_scans())
    placed = [r for r in results if not isinstance(r, str)]
    assert len(placed) == 15 and results.count("no_places") == 5
    assert all(p.lean for p in placed)
    state = _state(runtime, cid)
    assert [m for _, m, _ in state["groups"]] == [5, 5, 5] and len(state["members"]) == 15
