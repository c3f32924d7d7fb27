"""The lean ASGI path for joins and helps (campaigns/fast_path.py): it answers the usual
request itself, and every other one exactly as the FastAPI route does (it hands them over)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from fission_helpers import BARGAIN, GROUP_BUY, create

from liebian.campaigns.fast_path import FissionWritesApp, fission_write
from liebian.kit.auth import Role
from liebian.kit.db import session_scope
from liebian.workspaces.service import create_api_key


class _Counting:
    """Wraps the fallback to count the requests handed to the framework."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.calls = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.calls += 1
        await self.app(scope, receive, send)


@pytest.fixture
def fallback(client: Any) -> Iterator[_Counting]:
    lean: FissionWritesApp = client.app.fission_writes
    counting = _Counting(lean.fallback)
    lean.fallback = counting
    yield counting
    lean.fallback = counting.app


@pytest.fixture
def framework(client: Any) -> TestClient:
    """The FastAPI app alone: the answers the lean path must reproduce."""
    return TestClient(client.app.api, base_url="http://sho.rt")


@pytest.fixture
def targets(client: Any, owner: dict[str, str]) -> dict[str, str]:
    gcid = create(client, owner, "group_buy", GROUP_BUY)
    acid = create(client, owner, "assist", BARGAIN)
    gid = client.post(
        f"/api/v1/campaigns/{gcid}/groups", json={"leader_external_id": "leader"}, headers=owner
    ).json()["group_id"]
    aid = client.post(
        f"/api/v1/campaigns/{acid}/assists", json={"external_id": "owner"}, headers=owner
    ).json()["assist_id"]
    return {"join": f"/api/v1/groups/{gid}/join", "help": f"/api/v1/assists/{aid}/help"}


def test_paths_served() -> None:
    assert fission_write("/api/v1/groups/grp_1/join") == ("join", "grp_1")
    assert fission_write("/api/v1/assists/ast_1/help") == ("help", "ast_1")
    for other in (
        "/api/v1/groups/grp_1/join/",
        "/api/v1/groups//join",
        "/api/v1/groups/a/b/join",
        "/api/v1/groups/grp_1",
        "/api/v1/campaigns/c/groups",
        "/api/v1/assists/ast_1/helpers",
    ):
        assert fission_write(other) is None, other


def test_usual_requests_never_reach_the_framework(
    client: Any, owner: dict[str, str], targets: dict[str, str], fallback: _Counting
) -> None:
    joined = client.post(targets["join"], json={"external_id": "a"}, headers=owner)
    assert joined.status_code == 200, joined.text
    assert joined.headers["content-type"] == "application/json"
    body = joined.json()
    assert body["member_count"] == 2 and [m["external_id"] for m in body["members"]] == [
        "leader",
        "a",
    ]
    assert body["share_url"] == f"http://sho.rt/g/{body['group_id']}"
    assert body["expires_at"].endswith("Z")
    helped = client.post(targets["help"], json={"external_id": "h1"}, headers=owner)
    assert helped.status_code == 200, helped.text
    assert helped.json()["helper_index"] == 0 and helped.json()["cut"] > 0
    # Refusals are domain errors, rendered here with the same body.
    again = client.post(targets["help"], json={"external_id": "h1"}, headers=owner)
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "already_helped"
    missing = client.post("/api/v1/groups/grp_nope/join", json={"external_id": "a"}, headers=owner)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "group_not_found"
    assert fallback.calls == 0


def test_lean_and_framework_answers_match(
    client: Any, owner: dict[str, str], targets: dict[str, str], framework: TestClient
) -> None:
    # Refusals that do not change anything (already a member, self-help), and unknown ids.
    for kind, who in (("join", "leader"), ("help", "owner")):
        for path in (targets[kind], targets[kind].replace("/api/v1/", "/api/v1/x")):
            lean = client.post(path, json={"external_id": who}, headers=owner)
            direct = framework.post(path, json={"external_id": who}, headers=owner)
            assert (lean.status_code, lean.json()) == (direct.status_code, direct.json())
    # Same shape for a success either way.
    lean = client.post(targets["join"], json={"external_id": "b"}, headers=owner).json()
    direct = framework.post(targets["join"], json={"external_id": "c"}, headers=owner).json()
    assert lean.keys() == direct.keys()
    assert lean["members"][-1].keys() == direct["members"][-1].keys()


def _viewer_key(runtime: Any, owner_headers: dict[str, str], client: Any) -> str:
    workspace = client.get("/api/v1/workspace", headers=owner_headers).json()["id"]
    with session_scope(runtime.sessions) as session:
        _key, plaintext = create_api_key(session, workspace, Role.viewer)
    return plaintext


BAD_REQUESTS: list[tuple[str, dict[str, Any]]] = [
    ("invalid JSON", {"content": b"{nope", "headers": {"content-type": "application/json"}}),
    ("not an object", {"json": ["a"]}),
    ("missing field", {"json": {}}),
    ("unknown field", {"json": {"external_id": "x", "bogus": 1}}),
    ("too long", {"json": {"external_id": "x" * 129}}),
    ("wrong type", {"json": {"external_id": 5}}),
    ("empty body", {"content": b""}),
    ("text body", {"content": b'{"external_id": "x"}', "headers": {"content-type": "text/plain"}}),
    ("no key", {"json": {"external_id": "x"}, "headers": {"authorization": ""}}),
    ("unknown key", {"json": {"external_id": "x"}, "headers": {"authorization": "Bearer lb_no"}}),
    ("other scheme", {"json": {"external_id": "x"}, "headers": {"authorization": "Basic eA=="}}),
]


@pytest.mark.parametrize("kind", ["join", "help"])
def test_everything_else_gets_the_framework_answer(
    kind: str,
    client: Any,
    owner: dict[str, str],
    runtime: Any,
    targets: dict[str, str],
    framework: TestClient,
    fallback: _Counting,
) -> None:
    viewer = {"Authorization": f"Bearer {_viewer_key(runtime, owner, client)}"}
    # A viewer's key is cached once it has been used anywhere.
    assert client.get("/api/v1/workspace", headers=viewer).status_code == 200
    cases = [*BAD_REQUESTS, ("viewer key", {"json": {"external_id": "x"}, "headers": viewer})]
    for name, request in cases:
        merged = {k.lower(): v for k, v in (*owner.items(), *request.get("headers", {}).items())}
        headers = {k: v for k, v in merged.items() if v}
        kwargs = {k: v for k, v in request.items() if k != "headers"}
        lean = client.post(targets[kind], headers=headers, **kwargs)
        direct = framework.post(targets[kind], headers=headers, **kwargs)
        assert 400 <= lean.status_code < 500, (name, lean.text)
        assert (lean.status_code, lean.json()) == (direct.status_code, direct.json()), name
    assert fallback.calls == len(cases)


def test_oversized_and_chunked_bodies_reach_the_framework_whole(
    client: Any, owner: dict[str, str], targets: dict[str, str]
) -> None:
    lean: FissionWritesApp = client.app.fission_writes
    token = owner["Authorization"].encode()
    seen: dict[str, Any] = {}

    async def fallback(scope: Any, receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        seen["body"] = body

    app = FissionWritesApp(lean.runtime, fallback=fallback)
    app.max_body = 10  # the framework's limit answers; the lean path only hands over
    chunks = [b'{"external_id": ', b'"abc"', b"}"]

    async def receive_chunks() -> Any:
        chunk = chunks.pop(0)
        return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}

    async def ignore(_message: Any) -> None:
        return None

    scope = {
        "type": "http",
        "method": "POST",
        "path": targets["join"],
        "headers": [(b"authorization", token), (b"content-type", b"application/json")],
    }
    asyncio.run(app(scope, receive_chunks, ignore))
    assert seen["body"] == b'{"external_id": "abc"}'
    # Over the limit as declared: handed over before anything is read.
    big = client.post(
        targets["join"],
        content=b'{"external_id": "' + b"x" * (lean.max_body + 1) + b'"}',
        headers={**owner, "content-type": "application/json"},
    )
    assert big.status_code == 413 and big.json()["error"]["code"] == "too_large"


def test_a_failure_inside_the_work_is_a_500_not_a_second_attempt(
    client: Any,
    owner: dict[str, str],
    targets: dict[str, str],
    fallback: _Counting,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from liebian.campaigns import groups
    from liebian.campaigns.api import GroupJoin

    attempts: list[str] = []

    def broken(*_args: Any, **_kwargs: Any) -> Any:
        attempts.append("join")
        GroupJoin.model_validate({})  # a pydantic ValidationError from inside the work

    monkeypatch.setattr(groups, "join_group", broken)
    resp = client.post(targets["join"], json={"external_id": "a"}, headers=owner)
    assert resp.status_code == 500 and resp.json()["error"]["code"] == "internal"
    assert attempts == ["join"] and fallback.calls == 0
