"""Data scope (issue 15: "a community's staff see their own groups"), on SQLite and PostgreSQL.

A member scoped to a community, then to one group of it, cannot read or change another
community's groups by id, by list, by export or by a message naming the group; community-wide
settings need the whole community; no one gives a scope wider than their own; a key owned by
a scoped member is scoped the same; the change holds from the next request."""

from __future__ import annotations

import csv
import io
from typing import Any

import pyotp

B = "/api/v1"


def _csrf(client: Any) -> dict[str, str]:
    return {"X-CSRF-Token": client.cookies.get("lb_csrf")}


def _join(client: Any, owner: dict[str, str], token: str, login: str) -> str:
    client.cookies.clear()
    r = client.post(
        f"{B}/auth/accept-invitation",
        json={"token": token, "login": login, "password": "Lantern-42-river"},
    )
    assert r.status_code == 201, r.text
    return str(r.json()["member_id"])


def _world(client: Any, h: dict[str, str]) -> dict[str, str]:
    ids: dict[str, str] = {}
    for name in ("A", "B"):
        r = client.post(f"{B}/communities", json={"name": f"社群{name}"}, headers=h)
        assert r.status_code == 201, r.text
        ids[name] = r.json()["id"]
    for key, community in (("a1", "A"), ("a2", "A"), ("b1", "B")):
        r = client.post(
            f"{B}/communities/{ids[community]}/groups",
            json={"name": f"群{key}", "chat_id": f"chat-{key}"},
            headers=h,
        )
        assert r.status_code == 201, r.text
        ids[key] = r.json()["id"]
        for n in range(2):
            joined = client.post(
                f"{B}/community-groups/{ids[key]}/members",
                json={"external_id": f"u-{key}-{n}"},
                headers=h,
            )
            assert joined.status_code == 200, joined.text
    return ids


def _groups_in_csv(text: str) -> set[str]:
    rows = list(csv.DictReader(io.StringIO(text.lstrip("\ufeff"))))
    return {r["group_id"] for r in rows}


def test_scoped_staff_see_their_own_groups(client: Any, owner: dict[str, str]) -> None:
    h = owner
    ids = _world(client, h)
    owner_places = {
        key: g["capacity"] - g["members"]
        for key in ("a1", "a2")
        for g in client.get(f"{B}/communities/{ids['A']}/groups", headers=h).json()
        if g["id"] == ids[key]
    }
    whole = client.get(f"{B}/communities/{ids['A']}", headers=h).json()["places"]
    assert sum(p["places_left"] for p in whole) == owner_places["a1"] + owner_places["a2"]
    staff_role = client.post(
        f"{B}/team/roles",
        json={"name": "社群客服", "permissions": ["communities:read", "communities:write"]},
        headers=h,
    ).json()["id"]
    bad = client.post(
        f"{B}/team/invitations",
        json={"role": "viewer", "custom_role_id": staff_role, "scope": ["cmy_nope"]},
        headers=h,
    )
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_scope"
    inv = client.post(
        f"{B}/team/invitations",
        json={"role": "viewer", "custom_role_id": staff_role, "scope": [ids["A"]]},
        headers=h,
    )
    assert inv.status_code == 201, inv.text
    staff = _join(client, h, inv.json()["token"], "staff@example.com")
    me = client.get(f"{B}/auth/me").json()
    assert me["member_id"] == staff and me["scope"] == [ids["A"]]
    csrf = _csrf(client)

    # Scoped to community A: B is invisible by list, by id, by export and by message.
    listed = client.get(f"{B}/communities").json()["items"]
    assert [c["id"] for c in listed] == [ids["A"]]
    assert client.get(f"{B}/communities/{ids['A']}").status_code == 200
    for path in ("", "/groups", "/members", "/members.csv", "/alerts", "/metrics"):
        r = client.get(f"{B}/communities/{ids['B']}{path}")
        assert r.status_code == 404, (path, r.text)
    changed = client.patch(f"{B}/community-groups/{ids['b1']}", json={"name": "改名"}, headers=csrf)
    assert changed.status_code == 404
    joined = client.post(
        f"{B}/community-groups/{ids['b1']}/members", json={"external_id": "x"}, headers=csrf
    )
    assert joined.status_code == 404
    msg = {"message_id": "m1", "chat_id": "chat-b1", "external_id": "s1", "text": "你好"}
    r = client.post(f"{B}/community-messages", json={"messages": [msg]}, headers=csrf)
    assert r.status_code == 404, r.text
    post = client.post(
        f"{B}/communities/{ids['B']}/posts",
        json={"title": "晚安", "text": "早点休息", "at": "21:00"},
        headers=h,
    )
    assert post.status_code == 201, post.text
    for r in (
        client.get(f"{B}/communities/{ids['B']}/posts"),
        client.get(f"{B}/community-posts/{post.json()['id']}/sends"),
        client.patch(
            f"{B}/community-posts/{post.json()['id']}", json={"status": "paused"}, headers=csrf
        ),
    ):
        assert r.status_code == 404, r.text
    created = client.post(f"{B}/communities", json={"name": "新社群"}, headers=csrf)
    assert created.status_code == 403 and created.json()["error"]["code"] == "out_of_scope"
    # Nothing of B changed: the owner still sees its group as it was, with its two members.
    b_groups = client.get(f"{B}/communities/{ids['B']}/groups", headers=h).json()
    assert [(g["name"], g["members"]) for g in b_groups] == [("群b1", 2)]
    # In A, everything: both groups, their members, the export, a change.
    groups = client.get(f"{B}/communities/{ids['A']}/groups").json()
    assert {g["id"] for g in groups} == {ids["a1"], ids["a2"]}
    export = client.get(f"{B}/communities/{ids['A']}/members.csv")
    assert export.status_code == 200, export.text
    assert _groups_in_csv(export.text) == {ids["a1"], ids["a2"]}
    assert (
        client.patch(
            f"{B}/community-groups/{ids['a2']}", json={"name": "群a2新"}, headers=csrf
        ).status_code
        == 200
    )

    # Narrowed to group a1 (by the owner): from the staff's next request on.
    narrowed = client.put(f"{B}/team/members/{staff}/scope", json={"scope": [ids["a1"]]}, headers=h)
    assert narrowed.status_code == 200 and narrowed.json()["scope"] == [ids["a1"]]
    listed = client.get(f"{B}/communities").json()["items"]
    assert [c["id"] for c in listed] == [ids["A"]]
    # The places left count the staff's own group only (a2's places are not theirs to see).
    one = client.get(f"{B}/communities/{ids['A']}").json()["places"]
    assert listed[0]["places"] == one
    assert sum(p["groups_open"] for p in one) == 1
    assert sum(p["places_left"] for p in one) == owner_places["a1"]
    groups = client.get(f"{B}/communities/{ids['A']}/groups").json()
    assert [g["id"] for g in groups] == [ids["a1"]]
    members = client.get(f"{B}/communities/{ids['A']}/members").json()["items"]
    assert {m["group_id"] for m in members} == {ids["a1"]} and len(members) == 2
    export = client.get(f"{B}/communities/{ids['A']}/members.csv")
    assert _groups_in_csv(export.text) == {ids["a1"]}
    assert client.get(f"{B}/communities/{ids['A']}/members?group_id={ids['a2']}").status_code == 404
    assert (
        client.get(f"{B}/communities/{ids['A']}/members.csv?group_id={ids['a2']}").status_code
        == 404
    )
    assert (
        client.patch(
            f"{B}/community-groups/{ids['a2']}", json={"name": "x"}, headers=csrf
        ).status_code
        == 404
    )
    assert (
        client.patch(
            f"{B}/community-groups/{ids['a1']}", json={"name": "群a1新"}, headers=csrf
        ).status_code
        == 200
    )
    # Community-wide settings and lists need the whole community.
    for r in (
        client.patch(f"{B}/communities/{ids['A']}", json={"name": "x"}, headers=csrf),
        client.post(f"{B}/communities/{ids['A']}/groups", json={"name": "x"}, headers=csrf),
        client.get(f"{B}/communities/{ids['A']}/alerts"),
        client.get(f"{B}/communities/{ids['A']}/metrics?by=tier"),
    ):
        assert r.status_code == 403 and r.json()["error"]["code"] == "out_of_scope", r.text
    metrics = client.get(f"{B}/communities/{ids['A']}/metrics?by=group")
    assert metrics.status_code == 200, metrics.text
    assert {row["key"] for row in metrics.json()["summary"]} <= {ids["a1"]}
    # The owner (whole workspace) still sees everything; the name change of a1 landed.
    names = {g["name"] for g in client.get(f"{B}/communities/{ids['A']}/groups", headers=h).json()}
    assert names == {"群a1新", "群a2新"}


def test_no_one_gives_a_scope_wider_than_their_own(client: Any, owner: dict[str, str]) -> None:
    h = owner
    ids = _world(client, h)
    # A scoped admin (community A only), stepped up by enrolling TOTP.
    inv = client.post(
        f"{B}/team/invitations", json={"role": "admin", "scope": [ids["A"]]}, headers=h
    ).json()
    _join(client, h, inv["token"], "lead@example.com")
    csrf = _csrf(client)
    secret = client.post(f"{B}/auth/totp/enroll", headers=csrf).json()["secret"]
    confirmed = client.post(
        f"{B}/auth/totp/confirm", json={"code": pyotp.TOTP(secret).now()}, headers=csrf
    )
    assert confirmed.status_code == 200, confirmed.text

    wide = client.post(
        f"{B}/team/invitations", json={"role": "operator", "scope": [ids["b1"]]}, headers=csrf
    )
    assert wide.status_code == 403 and wide.json()["error"]["code"] == "grant_above_own"
    whole = client.post(f"{B}/team/invitations", json={"role": "operator"}, headers=csrf)
    assert whole.status_code == 403 and whole.json()["error"]["code"] == "grant_above_own"
    inside = client.post(
        f"{B}/team/invitations", json={"role": "operator", "scope": [ids["a2"]]}, headers=csrf
    )
    assert inside.status_code == 201, inside.text
    token = inside.json()["token"]

    # A key made by the scoped admin acts within the admin's scope.
    key = client.post(f"{B}/keys", json={"name": "脚本", "role": "operator"}, headers=csrf)
    assert key.status_code == 201, key.text
    kh = {"Authorization": f"Bearer {key.json()['key']}"}
    assert [c["id"] for c in client.get(f"{B}/communities", headers=kh).json()["items"]] == [
        ids["A"]
    ]
    assert client.get(f"{B}/communities/{ids['B']}/groups", headers=kh).status_code == 404

    operator = _join(client, h, token, "op@example.com")
    assert client.get(f"{B}/auth/me").json()["scope"] == [ids["a2"]]
    # The whole workspace again, given by the owner (unscoped): from the next request.
    client.cookies.clear()
    again = client.put(f"{B}/team/members/{operator}/scope", json={"scope": None}, headers=h)
    assert again.status_code == 200 and again.json()["scope"] is None
    unknown = client.put(
        f"{B}/team/members/{operator}/scope", json={"scope": ["cgp_nope"]}, headers=h
    )
    assert unknown.status_code == 422 and unknown.json()["error"]["code"] == "invalid_scope"
    audit = client.get(f"{B}/audit?action=team.scope_changed", headers=h).json()["items"]
    assert len(audit) == 1 and audit[0]["object_id"] == operator
