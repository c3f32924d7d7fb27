from __future__ import annotations

from typing import Any

from testkit import make_key


def test_owner_key_reads_its_workspace(client: Any, owner: dict[str, str]) -> None:
    resp = client.get("/api/v1/workspace", headers=owner)
    assert resp.status_code == 200
    assert resp.json()["id"].startswith("ws_")
    assert resp.json()["timezone"] == "Asia/Shanghai"


def test_missing_or_bad_key_is_401_with_error_body(client: Any) -> None:
    resp = client.get("/api/v1/workspace")
    assert resp.status_code == 401
    assert set(resp.json()["error"]) == {"code", "message", "details"}
    bad = client.get("/api/v1/workspace", headers={"Authorization": "Bearer lb_nope"})
    assert bad.status_code == 401
    assert bad.json()["error"]["code"] == "invalid_api_key"


def test_key_is_shown_once_stored_hashed_and_revocable(
    client: Any, owner: dict[str, str], runtime: Any
) -> None:
    created = client.post("/api/v1/keys", json={"name": "ci", "role": "analyst"}, headers=owner)
    assert created.status_code == 201
    key = created.json()["key"]
    assert key.startswith("lb_")
    listed = client.get("/api/v1/keys", headers=owner).json()["items"]
    assert all("key" not in item for item in listed)
    from sqlalchemy import text

    with runtime.engine.connect() as conn:
        stored = [r[0] for r in conn.execute(text("select key_hash from api_keys"))]
    assert key not in stored and all(len(h) == 64 for h in stored)
    analyst = {"Authorization": f"Bearer {key}"}
    assert client.get("/api/v1/workspace", headers=analyst).status_code == 200
    revoke = client.delete(f"/api/v1/keys/{created.json()['id']}", headers=owner)
    assert revoke.status_code == 200
    assert client.get("/api/v1/workspace", headers=analyst).status_code == 401


def test_roles_limit_key_management(client: Any, owner: dict[str, str], runtime: Any) -> None:
    ws_id = client.get("/api/v1/workspace", headers=owner).json()["id"]
    _, operator = make_key(runtime, "operator", ws_id)
    resp = client.post("/api/v1/keys", json={"role": "viewer"}, headers=operator)
    assert resp.status_code == 403
    _, admin = make_key(runtime, "admin", ws_id)
    escalate = client.post("/api/v1/keys", json={"role": "owner"}, headers=admin)
    assert escalate.status_code == 403


def test_keys_of_one_workspace_never_see_another(
    client: Any, owner: dict[str, str], runtime: Any
) -> None:
    _other_ws, other = make_key(runtime, "owner")
    mine = client.get("/api/v1/keys", headers=owner).json()["items"]
    theirs = client.get("/api/v1/keys", headers=other).json()["items"]
    assert {k["id"] for k in mine}.isdisjoint({k["id"] for k in theirs})
    own_key_id = mine[0]["id"]
    assert client.delete(f"/api/v1/keys/{own_key_id}", headers=other).status_code == 404


def test_unknown_fields_and_oversized_bodies_are_4xx(client: Any, owner: dict[str, str]) -> None:
    resp = client.post("/api/v1/keys", json={"role": "viewer", "colour": "red"}, headers=owner)
    assert resp.status_code == 422
    assert resp.json()["error"]["details"][0]["field"] == "colour"
    huge = b"{" + b" " * (17 * 1024 * 1024) + b"}"
    big = client.post(
        "/api/v1/keys", content=huge, headers={**owner, "content-type": "application/json"}
    )
    assert big.status_code == 413
    assert big.json()["error"]["code"] == "too_large"


def test_openapi_is_served(client: Any) -> None:
    spec = client.get("/openapi.json").json()
    assert "/api/v1/keys" in spec["paths"]
