"""Timeline, merge, CSV import/export and PIPL export/erasure, with the real event store
(DuckDB file) and OLTP (SQLite and PostgreSQL)."""

from __future__ import annotations

import csv
import io
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1] / "campaigns"))

from fission_helpers import INVITE, convert, create, join
from people_helpers import T0, events, person, tag, ws_of

from liebian.kit.db import session_scope
from testkit import make_key


def _count(runtime: Any, sql: str) -> int:
    with session_scope(runtime.sessions) as session:
        return int(session.scalar(text(sql)) or 0)


def test_timeline_merges_events_and_records_newest_first(
    client: Any, owner: dict[str, str], runtime: Any
) -> None:
    ws = ws_of(client, owner)
    person(runtime, ws, "u1")
    events(runtime, ws, "u1", 30)  # 08:00 … 08:29
    t = tag(client, owner, "VIP")
    client.post("/api/v1/contacts/u1/tags", json={"tag_ids": [t]}, headers=owner)  # now
    seen: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 7, **({"cursor": cursor} if cursor else {})}
        r = client.get("/api/v1/contacts/u1/timeline", params=params, headers=owner)
        assert r.status_code == 200, r.text
        seen += r.json()["items"]
        cursor = r.json()["next_cursor"]
        if not cursor:
            break
    assert len(seen) == 31
    assert seen[0]["source"] == "tag" and seen[0]["title"] == "添加标签 VIP"
    assert [i["ref_id"] for i in seen[1:]] == [f"u1-{i}" for i in reversed(range(30))]
    bad = client.get("/api/v1/contacts/u1/timeline", params={"cursor": "nope"}, headers=owner)
    assert bad.status_code == 422 and bad.json()["error"]["details"] == {"field": "cursor"}
    assert client.get("/api/v1/contacts/ghost/timeline", headers=owner).status_code == 404


def test_merge_moves_everything_and_is_audited(
    client: Any, owner: dict[str, str], runtime: Any
) -> None:
    ws = ws_of(client, owner)
    cid = create(client, owner, "invite", INVITE)
    code = join(client, owner, cid, "alice").json()["invite_code"]
    assert join(client, owner, cid, "bob", referrer_code=code).status_code in (200, 201)
    convert(runtime, ws, "bob", "signup", "s-bob")  # alice's invite qualifies → rewards
    person(runtime, ws, "alice2", phone="13900001111", nickname="爱丽丝")
    join(client, owner, cid, "alice2")  # both in the campaign: alice keeps her own seat
    t1, t2 = tag(client, owner, "A"), tag(client, owner, "B")
    client.post("/api/v1/contacts/alice/tags", json={"tag_ids": [t1]}, headers=owner)
    client.post("/api/v1/contacts/alice2/tags", json={"tag_ids": [t1, t2]}, headers=owner)
    events(runtime, ws, "alice2", 3, start=T0 - timedelta(days=1))
    rewards_before = _count(runtime, "SELECT count(*) FROM reward_entries")
    _, operator = make_key(runtime, "operator", ws)
    assert (
        client.post(
            "/api/v1/contacts/alice/merge", json={"other": "alice2"}, headers=operator
        ).status_code
        == 403
    )
    r = client.post("/api/v1/contacts/alice/merge", json={"other": "alice2"}, headers=owner)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["kept_on_merged"] == {"participants.contact_id": 1}
    assert out["moved"]["contact_tags"] == 1
    profile = client.get("/api/v1/contacts/alice", headers=owner).json()
    assert sorted(t["name"] for t in profile["tags"]) == ["A", "B"]
    assert profile["phone"] == "13900001111" and profile["nickname"] == "爱丽丝"
    # the merged external id names the survivor from now on
    assert (
        client.get("/api/v1/contacts/alice2", headers=owner).json()["merged_into_id"]
        == profile["id"]
    )
    assert _count(runtime, "SELECT count(*) FROM reward_entries") == rewards_before
    # the merged person's events are the survivor's now (event store re-keyed)
    timeline = client.get("/api/v1/contacts/alice", params={"limit": 50}, headers=owner)
    assert timeline.status_code == 200
    items = client.get("/api/v1/contacts/alice/timeline", headers=owner).json()["items"]
    # (fission actions are events too: fx:… ids)
    assert {"alice2-0", "alice2-1", "alice2-2"} <= {
        i["ref_id"] for i in items if i["source"] == "event"
    }
    assert (
        runtime.event_store.query("SELECT count(*) FROM events WHERE user_id = 'alice2'", {})[0][0]
        == 0
    )
    assert _count(runtime, "SELECT count(*) FROM contact_audit WHERE action = 'merge'") == 1
    again = client.post("/api/v1/contacts/alice/merge", json={"other": "alice2"}, headers=owner)
    assert again.status_code == 409
    ghost = client.post("/api/v1/contacts/alice/merge", json={"other": "ghost"}, headers=owner)
    assert ghost.status_code == 404 and ghost.json()["error"]["details"]["field"] == "other"


def test_merge_moves_community_places(client: Any, owner: dict[str, str], runtime: Any) -> None:
    """A merged person's group places follow them; where both had a place in one community,
    the survivor keeps its own and the merge says one stayed behind."""
    ws = ws_of(client, owner)
    for ext in ("carol", "carol2"):
        person(runtime, ws, ext)

    def community(name: str) -> tuple[str, str]:
        cmy = client.post("/api/v1/communities", json={"name": name}, headers=owner)
        assert cmy.status_code == 201, cmy.text
        cid = str(cmy.json()["id"])
        group = client.post(
            f"/api/v1/communities/{cid}/groups", json={"name": f"{name}1群"}, headers=owner
        ).json()["id"]
        return cid, str(group)

    (_, g1), (c2, g2) = community("福利群"), community("快闪群")
    for ext, group in (("carol", g1), ("carol2", g1), ("carol2", g2)):
        r = client.post(
            f"/api/v1/community-groups/{group}/members", json={"external_id": ext}, headers=owner
        )
        assert r.status_code == 200, r.text
    r = client.post("/api/v1/contacts/carol/merge", json={"other": "carol2"}, headers=owner)
    assert r.status_code == 200, r.text
    assert r.json()["kept_on_merged"] == {"community_members.contact_id": 1}
    survivor = client.get("/api/v1/contacts/carol", headers=owner).json()["id"]
    members = client.get(f"/api/v1/communities/{c2}/members", headers=owner).json()["items"]
    assert [m["contact_id"] for m in members] == [survivor]
    assert (
        _count(
            runtime,
            f"SELECT count(*) FROM community_members WHERE holder = '{survivor}'",
        )
        == 2
    )
    # The place moved: the person is in the community for the segment language too.
    again = client.post(
        f"/api/v1/community-groups/{g2}/members", json={"external_id": "carol"}, headers=owner
    )
    assert again.status_code == 200
    assert len(client.get(f"/api/v1/communities/{c2}/members", headers=owner).json()["items"]) == 1


def test_csv_import_validates_everything_first(
    client: Any, owner: dict[str, str], runtime: Any
) -> None:
    ws_of(client, owner)
    client.post(
        "/api/v1/contact-attributes", json={"key": "level", "type": "number"}, headers=owner
    )
    tag(client, owner, "VIP")
    post = lambda body: client.post(  # noqa: E731
        "/api/v1/contacts/import", content=body.encode(),
        headers={**owner, "Content-Type": "text/csv"},
    )  # fmt: skip
    bad = post(
        "external_id,phone,level,tags\n"
        "c1,13800001111,3,VIP\n"
        "c2,12ab,4,\n"  # malformed phone (row 3)
        "c3,,high,\n"  # wrong type (row 4)
        "c4,,,Nope\n"  # unknown tag (row 5)
    )
    assert bad.status_code == 422
    errors = bad.json()["error"]["details"]["errors"]
    assert [(e["row"], e["field"]) for e in errors] == [(3, "phone"), (4, "level"), (5, "tags")]
    unknown = post("external_id,shoe_size\nc1,42\n")
    assert unknown.json()["error"]["details"]["errors"][0] == {
        "row": 1, "field": "shoe_size",
        "problem": "unknown column: not a contact field nor a defined attribute key",
    }  # fmt: skip
    assert _count(runtime, "SELECT count(*) FROM contacts") == 0
    rows = "".join(f"c{i},1380000{i:04d},{i},VIP\n" for i in range(1, 121))
    ok = post("\ufeffexternal_id,phone,level,tags\n" + rows + "=cmd,,,\n")
    assert ok.status_code == 200, ok.text
    assert ok.json() == {"created": 121, "updated": 0, "rows": 121}
    assert post("external_id,nickname\nc1,王五\n").json() == {"created": 0, "updated": 1, "rows": 1}
    profile = client.get("/api/v1/contacts/c1", headers=owner).json()
    assert profile["nickname"] == "王五" and profile["attributes"] == {"level": 1.0}
    assert [t["source"] for t in profile["tags"]] == ["import"]
    # export: PII only for roles that may see it; formula cells neutralized
    full = client.get("/api/v1/contacts/export.csv", headers=owner)
    assert full.status_code == 200 and full.text.startswith("\ufeff")
    table = list(csv.DictReader(io.StringIO(full.text.lstrip("\ufeff"))))
    assert len(table) == 121
    row = next(r for r in table if r["external_id"] == "c1")
    assert (row["phone"], row["nickname"], row["tags"], row["level"]) == (
        "13800000001",
        "王五",
        "VIP",
        "1.0",
    )
    assert next(r for r in table if r["external_id"].endswith("cmd"))["external_id"] == "'=cmd"
    _, analyst = make_key(runtime, "analyst", ws_of(client, owner))
    masked = client.get("/api/v1/contacts/export.csv", headers=analyst).text
    header = masked.lstrip("\ufeff").splitlines()[0].split(",")
    assert "phone" not in header and "nickname" not in header and "13800000001" not in masked


def test_pipl_export_and_erase(client: Any, owner: dict[str, str], runtime: Any) -> None:
    ws = ws_of(client, owner)
    cid = create(client, owner, "invite", INVITE)
    code = join(client, owner, cid, "eve", phone="13700001234", nickname="夏娃").json()[
        "invite_code"
    ]
    join(client, owner, cid, "friend", referrer_code=code)
    convert(runtime, ws, "friend", "signup", "s-friend")
    client.post("/api/v1/identify", json={"visitor_id": "v-eve", "user_id": "eve"}, headers=owner)
    events(runtime, ws, "eve", 5)
    runtime.event_store.insert([])  # nothing
    dump = client.get("/api/v1/contacts/eve/export", headers=owner)
    assert dump.status_code == 200, dump.text
    body = dump.json()
    assert body["contact"]["phone"] == "13700001234"
    # (5 events of ours, plus fission actions once the flusher has loaded them)
    assert len(body["events"]) >= 5 and body["records"]["participants"]
    assert body["records"]["reward_entries"]
    _, analyst = make_key(runtime, "analyst", ws)
    assert client.get("/api/v1/contacts/eve/export", headers=analyst).status_code == 403
    # A community place with screening answers (as the entry page stores them).
    cmy = client.post("/api/v1/communities", json={"name": "宝妈群"}, headers=owner).json()["id"]
    group = client.post(
        f"/api/v1/communities/{cmy}/groups", json={"name": "1群"}, headers=owner
    ).json()["id"]
    client.post(
        f"/api/v1/community-groups/{group}/members", json={"external_id": "eve"}, headers=owner
    )
    with session_scope(runtime.sessions) as session:
        session.execute(text("""UPDATE community_members SET answers = '{"city": "北京"}'"""))
    ledger = _count(runtime, "SELECT coalesce(sum(amount), 0) FROM reward_entries")
    revenue = runtime.event_store.query("SELECT count(*) FROM events", {})[0][0]
    gone = client.delete("/api/v1/contacts/eve", headers=owner)
    assert gone.status_code == 200, gone.text
    marker = gone.json()["marker"]
    assert marker.startswith("erased:") and gone.json()["events_pseudonymized"] >= 5
    with runtime.engine.connect() as conn:
        raw = " ".join(
            str(v) for r in conn.execute(text("SELECT * FROM contacts")) for v in r
        ) + " ".join(str(v) for r in conn.execute(text("SELECT * FROM contact_aliases")) for v in r)
    assert " eve " not in f" {raw} " and "v-eve" not in raw
    assert (
        _count(
            runtime,
            "SELECT count(*) FROM community_members WHERE CAST(answers AS TEXT) LIKE '%北京%'",
        )
        == 0
    )
    assert (
        runtime.event_store.query(
            "SELECT count(*) FROM events WHERE user_id = 'eve' OR visitor_id = 'v-eve'", {}
        )[0][0]
        == 0
    )
    # nothing deleted (the flusher may have added fission actions meanwhile)
    assert runtime.event_store.query("SELECT count(*) FROM events", {})[0][0] >= revenue
    assert (
        runtime.event_store.query("SELECT count(*) FROM aliases WHERE user_id = 'eve'", {})[0][0]
        == 0
    )
    assert _count(runtime, "SELECT coalesce(sum(amount), 0) FROM reward_entries") == ledger
    assert _count(runtime, "SELECT count(*) FROM contact_audit WHERE action = 'erase'") == 1
    assert (
        client.get("/api/v1/contacts", params={"q": "13700001234"}, headers=owner).json()["items"]
        == []
    )
    assert client.delete("/api/v1/contacts/eve", headers=owner).status_code == 404
    again = client.delete(f"/api/v1/contacts/{marker}", headers=owner)
    assert again.status_code == 410
    unknown = client.delete("/api/v1/contacts/nobody", headers=owner)
    assert unknown.status_code == 404 and "nobody" in unknown.json()["error"]["message"]


def test_reconcile_recomputes_from_the_event_store(
    client: Any, owner: dict[str, str], runtime: Any
) -> None:
    from liebian.contacts.computed import reconcile
    from liebian.events.store import EventRow
    from liebian.kit.clock import utcnow

    ws = ws_of(client, owner)
    person(runtime, ws, "r1")
    runtime.event_store.insert(
        [
            EventRow(ws, "a", "click", T0, visitor_id="v-r1", channel="wechat_group"),
            EventRow(ws, "b", "purchase", T0 + timedelta(hours=1), user_id="r1", revenue=50_000),
            EventRow(ws, "c", "purchase", T0 + timedelta(hours=2), user_id="r1", revenue=20_000),
        ]
    )
    client.post("/api/v1/identify", json={"visitor_id": "v-r1", "user_id": "r1"}, headers=owner)
    with session_scope(runtime.sessions) as session:
        assert reconcile(session, runtime.event_store, ws, utcnow()) == 1
    c = client.get("/api/v1/contacts/r1", headers=owner).json()["computed"]
    assert (c["first_channel"], c["orders_count"], c["gmv_cents"]) == ("wechat_group", 2, 70_000)
    assert c["first_seen_at"].startswith("2026-11-01T08:00") and c["rfm_class"] == "重要保持"
    with session_scope(runtime.sessions) as session:
        assert reconcile(session, runtime.event_store, ws, utcnow()) == 0  # nothing differs
