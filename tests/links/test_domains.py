"""Short domains: validation, uniqueness, roles, block/unblock moving short URLs, history, CLI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from liebian.app.runtime import Runtime
from liebian.kit.settings import Settings
from testkit import TEST_SECRET, make_key

API = "/api/v1/domains"


def _ws(client: Any, headers: dict[str, str]) -> str:
    workspace_id: str = client.get("/api/v1/workspace", headers=headers).json()["id"]
    return workspace_id


def _add(client: Any, headers: dict[str, str], host: str, **extra: Any) -> dict[str, Any]:
    r = client.post(API, json={"host": host, **extra}, headers=headers)
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


def _live_code_url(client: Any, headers: dict[str, str]) -> tuple[str, str]:
    r = client.post(
        "/api/v1/live-codes",
        json={"name": "群", "targets": [{"url": "https://example.com/g", "capacity": 5}]},
        headers=headers,
    )
    assert r.status_code == 201, r.text
    return r.json()["id"], r.json()["short_url"]


def test_add_normalizes_and_primary_only_when_asked(client: Any, owner: dict[str, str]) -> None:
    lc_id, url = _live_code_url(client, owner)
    first = _add(client, owner, "  S.Example.COM. ")
    assert first["host"] == "s.example.com"
    # 设为主域名 unticked: not primary, not used, every short URL stays where it was.
    assert first["status"] == "healthy" and not first["is_primary"] and not first["in_use"]
    assert client.get(f"/api/v1/live-codes/{lc_id}", headers=owner).json()["short_url"] == url
    link = client.post("/api/v1/links", json={"url": "https://e.example.com/"}, headers=owner)
    assert link.json()["short_url"].startswith("http://sho.rt/")
    second = _add(client, owner, "短链.中国")
    assert second["host"] == "xn--s7y033d.xn--fiqs8s"  # IDNA, as DNS and TLS certificates hold it
    assert not second["is_primary"]
    third = _add(client, owner, "t.example.com", is_primary=True)
    listed = client.get(API, headers=owner).json()["items"]
    assert [d["id"] for d in listed if d["is_primary"]] == [third["id"]]
    assert [d["host"] for d in listed if d["in_use"]] == ["t.example.com"]


@pytest.mark.parametrize(
    "host",
    [
        "https://s.example.com",
        "s.example.com:8080",
        "s.example.com/path",
        "1.2.3.4",
        "::1",
        "localhost",
        "-bad.example.com",
        "a..example.com",
        "under_score.example.com",
        "example.123",
        "a" * 64 + ".example.com",
        "",
    ],
)
def test_bad_hosts_are_rejected(client: Any, owner: dict[str, str], host: str) -> None:
    r = client.post(API, json={"host": host}, headers=owner)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] in ("invalid_host", "invalid_request")
    assert client.get(API, headers=owner).json()["items"] == []


def test_unknown_fields_rejected(client: Any, owner: dict[str, str]) -> None:
    r = client.post(API, json={"host": "s.example.com", "status": "blocked"}, headers=owner)
    assert r.status_code == 422


def test_host_is_unique_across_workspaces(
    client: Any, owner: dict[str, str], runtime: Runtime
) -> None:
    _add(client, owner, "s.example.com")
    _ws_id, other = make_key(runtime, "owner")
    r = client.post(API, json={"host": "S.EXAMPLE.com"}, headers=other)
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "domain_taken"
    assert client.get(API, headers=other).json()["items"] == []


def test_roles(client: Any, owner: dict[str, str], runtime: Runtime) -> None:
    domain = _add(client, owner, "s.example.com")
    ws = _ws(client, owner)
    _, operator = make_key(runtime, "operator", ws)
    _, viewer = make_key(runtime, "viewer", ws)
    _, admin = make_key(runtime, "admin", ws)
    assert client.post(API, json={"host": "t.example.com"}, headers=operator).status_code == 403
    block = f"{API}/{domain['id']}/block"
    assert client.post(block, json={"reason": "x"}, headers=operator).status_code == 403
    assert client.delete(f"{API}/{domain['id']}", headers=viewer).status_code == 403
    assert client.get(API, headers=viewer).status_code == 200
    assert client.post(block, json={"reason": "x"}, headers=admin).status_code == 200


def test_other_workspace_gets_404(client: Any, owner: dict[str, str], runtime: Runtime) -> None:
    domain = _add(client, owner, "s.example.com")
    _, other = make_key(runtime, "owner")
    for method, path, body in [
        ("get", f"{API}/{domain['id']}", None),
        ("post", f"{API}/{domain['id']}/block", {"reason": "x"}),
        ("post", f"{API}/{domain['id']}/unblock", None),
        ("delete", f"{API}/{domain['id']}", None),
    ]:
        kwargs: dict[str, Any] = {"headers": other}
        if body is not None:
            kwargs["json"] = body
        r = getattr(client, method)(path, **kwargs)
        assert r.status_code == 404, (method, path, r.text)
    assert client.get(f"{API}/{domain['id']}", headers=owner).json()["status"] == "healthy"


def test_block_moves_short_urls_and_unblock_moves_them_back(
    client: Any, owner: dict[str, str], runtime: Runtime
) -> None:
    lc_id, url = _live_code_url(client, owner)
    assert url.startswith("http://sho.rt/")  # no domain yet: the server's base URL
    slug = url.rsplit("/", 1)[1]
    primary = _add(client, owner, "a.example.com", is_primary=True)
    backup = _add(client, owner, "b.example.com")

    def short_url() -> str:
        value: str = client.get(f"/api/v1/live-codes/{lc_id}", headers=owner).json()["short_url"]
        return value

    assert short_url() == f"https://a.example.com/{slug}"

    seen: list[Any] = []
    runtime.bus.subscribe("domains.changed", seen.append)
    r = client.post(
        f"{API}/{primary['id']}/block", json={"reason": "微信内提示停止访问"}, headers=owner
    )
    assert r.status_code == 200
    assert r.json()["status"] == "blocked" and r.json()["note"] == "微信内提示停止访问"
    assert r.json()["status_changed_at"] is not None and not r.json()["in_use"]
    assert seen == [_ws(client, owner)]
    assert short_url() == f"https://b.example.com/{slug}"

    # Blocking again is a no-op (a retried call), not a second history entry.
    again = client.post(f"{API}/{primary['id']}/block", json={"reason": "retry"}, headers=owner)
    assert again.status_code == 200 and again.json()["note"] == "微信内提示停止访问"
    assert len(seen) == 1

    # Every domain blocked: links fall back to the server's own base URL; nothing is rotated.
    client.post(f"{API}/{backup['id']}/block", json={"reason": "也被封"}, headers=owner)
    assert short_url() == f"http://sho.rt/{slug}"

    r = client.post(f"{API}/{primary['id']}/unblock", json={"note": "申诉成功"}, headers=owner)
    assert r.status_code == 200 and r.json()["status"] == "healthy"
    assert short_url() == f"https://a.example.com/{slug}"

    detail = client.get(f"{API}/{primary['id']}", headers=owner).json()
    assert [(h["status"], h["note"]) for h in detail["history"]] == [
        ("healthy", "申诉成功"),
        ("blocked", "微信内提示停止访问"),
        ("added", ""),
    ]
    assert all(h["actor"].startswith("key_") for h in detail["history"])


def test_block_needs_a_reason(client: Any, owner: dict[str, str]) -> None:
    domain = _add(client, owner, "s.example.com")
    for body in ({}, {"reason": "   "}):
        r = client.post(f"{API}/{domain['id']}/block", json=body, headers=owner)
        assert r.status_code == 422
    assert client.get(f"{API}/{domain['id']}", headers=owner).json()["status"] == "healthy"


def test_make_primary_and_delete(client: Any, owner: dict[str, str]) -> None:
    a = _add(client, owner, "a.example.com")
    b = _add(client, owner, "b.example.com")
    r = client.patch(f"{API}/{b['id']}", json={"is_primary": True}, headers=owner)
    assert r.status_code == 200 and r.json()["is_primary"] and r.json()["in_use"]
    assert not client.get(f"{API}/{a['id']}", headers=owner).json()["is_primary"]
    assert client.delete(f"{API}/{b['id']}", headers=owner).status_code == 204
    assert client.get(f"{API}/{b['id']}", headers=owner).status_code == 404
    items = client.get(API, headers=owner).json()["items"]
    # The primary is gone and none was chosen: links go back to the server's base URL rather
    # than onto a domain the operator never picked.
    assert [d["host"] for d in items] == ["a.example.com"] and not items[0]["in_use"]


def test_cli_add_list_block_unblock(
    client: Any, owner: dict[str, str], settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from liebian.cli import app

    monkeypatch.setenv("LIEBIAN_DATABASE_URL", settings.resolved_database_url)
    monkeypatch.setenv("LIEBIAN_SECRET_KEY", TEST_SECRET)
    data_dir = str(Path(settings.data_dir) / "cli")
    runner = CliRunner()

    def run(*args: str) -> str:
        result = runner.invoke(app, ["domains", *args, "--data-dir", data_dir])
        assert result.exit_code == 0, result.output
        return result.output

    assert "s.example.com\thealthy\tprimary" in run("add", "s.example.com", "--primary")
    run("add", "t.example.com")
    assert "s.example.com\tblocked" in run("block", "s.example.com", "--reason", "封了")
    listing = run("list")
    assert "s.example.com\tblocked\tprimary" in listing and "封了" in listing
    assert "t.example.com\thealthy" in listing
    assert "s.example.com\thealthy" in run("unblock", "s.example.com")

    bad = runner.invoke(app, ["domains", "add", "bad host", "--data-dir", data_dir])
    assert bad.exit_code == 1 and "not a host name" in bad.output
    # The API sees what the CLI did, with "cli" as the actor.
    items = client.get(API, headers=owner).json()["items"]
    detail = client.get(f"{API}/{items[0]['id']}", headers=owner).json()
    assert {h["actor"] for h in detail["history"]} == {"cli"}
