"""Members and console sign-in, end to end through the API (SQLite and PostgreSQL): a one-time
invitation, password rules, the session cookie and CSRF, a role change on the next request,
the last owner, failed sign-ins locked, sign-out everywhere, TOTP step-up with replay refused,
recovery codes, and the audit log that records all of it."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pyotp
from sqlalchemy import text, update

from liebian.kit.clock import utcnow
from liebian.kit.db import session_scope
from liebian.team.models import ConsoleSession


def _invite(client: Any, headers: dict[str, str], role: str) -> str:
    resp = client.post("/api/v1/team/invitations", json={"role": role}, headers=headers)
    assert resp.status_code == 201, resp.text
    assert resp.json()["url"].endswith("/admin/join#" + resp.json()["token"])
    return str(resp.json()["token"])


def _sign_in(client: Any, login: str, password: str) -> Any:
    client.cookies.clear()
    return client.post("/api/v1/auth/sign-in", json={"login": login, "password": password})


def _csrf(client: Any) -> dict[str, str]:
    return {"X-CSRF-Token": client.cookies.get("lb_csrf")}


def test_members_sign_in_roles_and_audit(client: Any, owner: dict[str, str], runtime: Any) -> None:
    ws = client.get("/api/v1/workspace", headers=owner).json()["id"]
    # The first owner comes by a one-time link (the CLI's `team owner-link` makes the same).
    from liebian.team.service import owner_invitation

    with session_scope(runtime.sessions) as session:
        _inv, owner_token = owner_invitation(session, ws)
    weak = client.post(
        "/api/v1/auth/accept-invitation",
        json={"token": owner_token, "login": "boss@example.com", "password": "short"},
    )
    assert weak.status_code == 422 and weak.json()["error"]["code"] == "weak_password"
    joined = client.post(
        "/api/v1/auth/accept-invitation",
        json={"token": owner_token, "login": "Boss@Example.com", "password": "Lantern-42-river"},
    )
    assert joined.status_code == 201, joined.text
    boss_id = joined.json()["member_id"]
    cookie = joined.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Secure" not in cookie
    reused = client.post(
        "/api/v1/auth/accept-invitation",
        json={"token": owner_token, "login": "x@example.com", "password": "Lantern-42-river"},
    )
    assert reused.status_code == 410 and reused.json()["error"]["code"] == "invitation_used"

    # Signed in by password: the cookie authenticates; a state change needs the CSRF token.
    signed = _sign_in(client, "boss@example.com", "Lantern-42-river")
    assert signed.status_code == 200 and signed.json()["role"] == "owner"
    me = client.get("/api/v1/auth/me").json()
    assert me["member_id"] == boss_id and me["login"] == "b***@example.com"
    no_csrf = client.post("/api/v1/team/invitations", json={"role": "operator"})
    assert no_csrf.status_code == 403 and no_csrf.json()["error"]["code"] == "csrf_failed"
    bad_csrf = client.post(
        "/api/v1/team/invitations", json={"role": "operator"}, headers={"X-CSRF-Token": "x"}
    )
    assert bad_csrf.status_code == 403
    op_token = _invite(client, _csrf(client), "operator")

    # A second member; a role change holds from their next request.
    client.cookies.clear()
    client.post(
        "/api/v1/auth/accept-invitation",
        json={"token": op_token, "login": "138 0013 8000", "password": "Harbor#lights7"},
    )
    op_id = client.get("/api/v1/auth/me").json()["member_id"]
    assert (
        client.post(
            "/api/v1/links", json={"url": "https://e.com"}, headers=_csrf(client)
        ).status_code
        == 201
    )
    # An operator cannot invite (no members permission), nor grant above themselves.
    assert (
        client.post(
            "/api/v1/team/invitations", json={"role": "viewer"}, headers=_csrf(client)
        ).status_code
        == 403
    )
    op_cookies = dict(client.cookies)
    role_change = client.patch(
        f"/api/v1/team/members/{op_id}", json={"role": "viewer"}, headers=owner
    )
    assert role_change.status_code == 200, role_change.text
    client.cookies.clear()
    client.cookies.update(op_cookies)
    demoted = client.post("/api/v1/links", json={"url": "https://e.com/2"}, headers=_csrf(client))
    assert demoted.status_code == 403
    # The last owner cannot be demoted or removed (by the owner key either).
    last = client.patch(f"/api/v1/team/members/{boss_id}", json={"role": "admin"}, headers=owner)
    assert last.status_code == 409 and last.json()["error"]["code"] == "last_owner"
    assert client.delete(f"/api/v1/team/members/{boss_id}", headers=owner).status_code == 409

    # Wrong passwords: the same message for unknown accounts; locked after five.
    for _ in range(5):
        assert _sign_in(client, "13800138000", "wrong-password-1").status_code == 401
    assert _sign_in(client, "nobody@example.com", "wrong-password-1").status_code == 401
    locked = _sign_in(client, "13800138000", "Harbor#lights7")
    assert locked.status_code == 429 and locked.json()["error"]["code"] == "account_locked"
    assert "retry-after" in locked.headers

    # Sign out everywhere: both of the owner's browsers lose their session.
    _sign_in(client, "boss@example.com", "Lantern-42-river")
    first = dict(client.cookies)
    _sign_in(client, "boss@example.com", "Lantern-42-river")
    ended = client.post("/api/v1/auth/sign-out-everywhere", headers=_csrf(client))
    assert ended.json()["sessions_ended"] >= 2
    client.cookies.clear()
    client.cookies.update(first)
    assert client.get("/api/v1/auth/me").status_code == 401
    client.cookies.clear()

    # The audit log: who did what, sign-ins and failures, the role change with before/after.
    log = client.get("/api/v1/audit", params={"limit": 200}, headers=owner).json()["items"]
    actions = [e["action"] for e in log]
    for expected in (
        "auth.sign_in",
        "auth.sign_in_failed",
        "team.role_changed",
        "team.accept_invitation",
        "team.invited",
        "create_link",
    ):
        assert expected in actions, (expected, actions)
    change = next(e for e in log if e["action"] == "team.role_changed")
    assert change["object_id"] == op_id and change["key_id"] and change["outcome"] == "ok"
    assert change["changes"][f"members:{op_id}"]["fields"]["role"] == ["operator", "viewer"]
    denied = [e for e in log if e["outcome"] == "denied"]
    assert any(e["member_id"] == op_id and e["status"] == 403 for e in denied)
    joins = [e for e in log if e["action"] == "team.accept_invitation"]
    accounts = [v for e in joins for k, v in e["changes"].items() if k.startswith("team_accounts")]
    assert {a["fields"].get("email_enc", a["fields"].get("phone_enc"))[1] for a in accounts} == {
        "***"
    }  # PII masked
    assert all(a["fields"]["password_hash"][1] == "***" for a in accounts)
    dumped = json.dumps(log).lower()
    assert "boss@example.com" not in dumped and "13800138000" not in dumped
    assert client.get("/api/v1/audit", params={"member_id": op_id}, headers=owner).json()["items"]
    exported = client.get("/api/v1/audit/export.csv", headers=owner)
    assert exported.status_code == 200 and "team.role_changed" in exported.text
    exports = client.get("/api/v1/audit", params={"action": "audit.export"}, headers=owner)
    assert len(exports.json()["items"]) == 1  # the export itself is recorded, once
    # Append-only: the database refuses to rewrite history.
    import pytest
    from sqlalchemy.exc import DBAPIError

    with pytest.raises(DBAPIError), runtime.engine.begin() as conn:
        conn.execute(text("UPDATE audit_log SET action = 'nothing'"))


def test_totp_step_up_replay_and_recovery(client: Any, owner: dict[str, str], runtime: Any) -> None:
    token = _invite(client, owner, "admin")
    client.post(
        "/api/v1/auth/accept-invitation",
        json={"token": token, "login": "ops@example.com", "password": "Quartz-and-9-owls"},
    )
    csrf = _csrf(client)
    batch = "/api/v1/payouts/batches/pob_01JAAAAAAAAAAAAAAAAAAAAAAA/export.csv"
    refused = client.get(batch)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "step_up_required"
    no_factor = client.post("/api/v1/auth/step-up", json={"code": "123456"}, headers=csrf)
    assert no_factor.status_code == 409 and no_factor.json()["error"]["code"] == "totp_not_enrolled"

    secret = client.post("/api/v1/auth/totp/enroll", headers=csrf).json()["secret"]
    totp = pyotp.TOTP(secret)
    assert (
        client.post(
            "/api/v1/auth/totp/confirm",
            json={"code": "000000" if totp.now() != "000000" else "111111"},
            headers=csrf,
        ).status_code
        == 422
    )
    codes = client.post("/api/v1/auth/totp/confirm", json={"code": totp.now()}, headers=csrf)
    assert codes.status_code == 200, codes.text
    recovery = codes.json()["recovery_codes"]
    assert len(recovery) == 10
    # Confirming counts as a verification: the export passes the step-up check now.
    assert client.get(batch).status_code == 404
    # Ten minutes later it no longer does.
    with session_scope(runtime.sessions) as session:
        session.execute(update(ConsoleSession).values(verified_at=utcnow() - timedelta(minutes=11)))
    assert client.get(batch).json()["error"]["code"] == "step_up_required"
    # The code just used (same time step) is refused: a replay within its window.
    replay = client.post("/api/v1/auth/step-up", json={"code": totp.now()}, headers=csrf)
    assert replay.status_code == 422 and replay.json()["error"]["code"] == "totp_replayed"
    # A recovery code works once.
    ok = client.post("/api/v1/auth/step-up", json={"code": recovery[0]}, headers=csrf)
    assert ok.status_code == 200 and ok.json()["stepped_up"] is True
    assert client.get(batch).status_code == 404
    again = client.post("/api/v1/auth/step-up", json={"code": recovery[0]}, headers=csrf)
    assert again.status_code == 422
    # The workspace may require the code at sign-in: password alone then reaches nothing.
    assert (
        client.put("/api/v1/team/policy", json={"require_totp": True}, headers=owner).status_code
        == 200
    )
    client.cookies.clear()
    client.post(
        "/api/v1/auth/sign-in", json={"login": "ops@example.com", "password": "Quartz-and-9-owls"}
    )
    assert client.get("/api/v1/workspace").json()["error"]["code"] == "totp_required"
    ok = client.post("/api/v1/auth/step-up", json={"code": recovery[1]}, headers=_csrf(client))
    assert ok.status_code == 200
    assert client.get("/api/v1/workspace").status_code == 200

    # A lost phone: verified by a recovery code (just now), new codes replace the old ones,
    # then the authenticator is removed and a new one enrolled.
    csrf = _csrf(client)
    renewed = client.post("/api/v1/auth/recovery-codes", headers=csrf)
    assert renewed.status_code == 200 and len(renewed.json()["recovery_codes"]) == 10
    old = client.post("/api/v1/auth/step-up", json={"code": recovery[2]}, headers=csrf)
    assert old.status_code == 422  # the old set stopped working
    assert client.post("/api/v1/auth/totp/enroll", headers=csrf).status_code == 409
    removed = client.delete("/api/v1/auth/totp", headers=csrf)
    assert removed.status_code == 200 and removed.json()["totp_enabled"] is False
    assert client.post("/api/v1/auth/totp/enroll", headers=csrf).status_code == 200
    with session_scope(runtime.sessions) as session:
        session.execute(update(ConsoleSession).values(verified_at=utcnow() - timedelta(minutes=11)))
    stale = client.post("/api/v1/auth/recovery-codes", headers=csrf)
    assert stale.status_code == 403 and stale.json()["error"]["code"] == "step_up_required"
    actions = [e["action"] for e in client.get("/api/v1/audit", headers=owner).json()["items"]]
    assert "auth.recovery_codes_renewed" in actions and "auth.totp_removed" in actions


def test_custom_roles_gate_by_area_and_never_exceed_the_granter(
    client: Any, owner: dict[str, str], runtime: Any, monkeypatch: Any
) -> None:
    # Failed sign-ins are limited per IP too (kit/ratelimit; 30 per 15 min, 2 here).
    from liebian.kit.ratelimit import Rate
    from liebian.team import api as team_api

    monkeypatch.setattr(team_api, "SIGN_IN_PER_IP", Rate(2, 900.0))
    for _ in range(2):
        assert _sign_in(client, "who@example.com", "Wrong-pass-123").status_code == 401
    limited = _sign_in(client, "who@example.com", "Wrong-pass-123")
    assert limited.status_code == 429
    assert limited.json()["error"]["code"] == "sign_in_rate_limited"
    monkeypatch.setattr(team_api, "SIGN_IN_PER_IP", Rate(0, 900.0))

    # Every API path belongs to an area (a custom role is refused unknown paths).
    from liebian.team.permissions import area_of

    paths = client.get("/openapi.json").json()["paths"]
    unmapped = {p for p in paths if p.startswith("/api/v1/") and area_of(p) is None}
    assert "/api/v1/links" in paths
    assert unmapped == set()

    unknown = client.post(
        "/api/v1/team/roles", json={"name": "x", "permissions": ["links:fly"]}, headers=owner
    )
    assert unknown.status_code == 422 and unknown.json()["error"]["code"] == "unknown_permission"
    made = client.post(
        "/api/v1/team/roles",
        json={"name": "数据分析", "permissions": ["analytics:read", "links:read", "members:read"]},
        headers=owner,
    )
    assert made.status_code == 201, made.text
    role_id = made.json()["id"]
    invited = client.post(
        "/api/v1/team/invitations",
        json={"role": "viewer", "custom_role_id": role_id},
        headers=owner,
    ).json()
    client.post(
        "/api/v1/auth/accept-invitation",
        json={"token": invited["token"], "login": "ana@example.com", "password": "Numbers-and-9"},
    )
    csrf = _csrf(client)
    assert client.get("/api/v1/links").status_code == 200
    refused = client.post("/api/v1/links", json={"url": "https://e.com"}, headers=csrf)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "insufficient_permission"
    assert client.get("/api/v1/webhooks").status_code == 403  # settings: not held
    me = client.get("/api/v1/auth/me").json()
    assert set(me["permissions"]) == {"analytics:read", "links:read", "members:read"}
    # Holding members:read is not members:write: no invitations, no roles.
    assert (
        client.post("/api/v1/team/invitations", json={"role": "viewer"}, headers=csrf).status_code
        == 403
    )
    # No one grants more than they hold: an operator manages no roles, an admin grants no owner.
    ws = client.get("/api/v1/workspace", headers=owner).json()["id"]
    from testkit import make_key

    _, operator = make_key(runtime, "operator", ws)
    above = client.post(
        "/api/v1/team/roles",
        json={"name": "pii", "permissions": ["contacts:pii"]},
        headers=operator,
    )
    assert above.status_code == 403
    _, admin = make_key(runtime, "admin", ws)
    owner_grant = client.post("/api/v1/team/invitations", json={"role": "owner"}, headers=admin)
    assert owner_grant.status_code == 403
    assert owner_grant.json()["error"]["code"] == "grant_above_own"
    # A role change holds from the member's next request.
    members = client.get("/api/v1/team/members", headers=owner).json()
    ana = next(m for m in members if m["custom_role_id"] == role_id)
    assert (
        client.patch(
            f"/api/v1/team/members/{ana['id']}", json={"role": "operator"}, headers=owner
        ).status_code
        == 200
    )
    assert (
        client.post("/api/v1/links", json={"url": "https://e.com"}, headers=csrf).status_code == 201
    )
