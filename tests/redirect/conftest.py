from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture
def create_link(client: Any, owner: dict[str, str]) -> Any:
    def make(**fields: Any) -> dict[str, Any]:
        fields.setdefault("url", "https://example.com/landing")
        resp = client.post("/api/v1/links", json=fields, headers=owner)
        assert resp.status_code == 201, resp.text
        body: dict[str, Any] = resp.json()
        return body

    return make


@pytest.fixture
def stats(client: Any, owner: dict[str, str]) -> Any:
    def get(link_id: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
        resp = client.get(f"/api/v1/links/{link_id}/stats", headers=headers or owner)
        assert resp.status_code == 200, resp.text
        body: dict[str, Any] = resp.json()
        return body

    return get
