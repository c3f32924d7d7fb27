"""An empty ``group_id`` on a tag means "no group", like null — found by Schemathesis as a
foreign-key 500 (POST /api/v1/tags with ``"group_id": ""``)."""

from __future__ import annotations

from typing import Any


def test_an_empty_group_id_is_no_group(client: Any, owner: dict[str, str]) -> None:
    made = client.post(
        "/api/v1/tags", json={"group_id": "", "name": "高意向", "color": "#E676Dd"}, headers=owner
    )
    assert made.status_code == 201, made.text
    assert made.json()["group_id"] is None and made.json()["color"] == "#e676dd"
    tag_id = made.json()["id"]
    group = client.post("/api/v1/tag-groups", json={"name": "意向"}, headers=owner).json()
    moved = client.patch(f"/api/v1/tags/{tag_id}", json={"group_id": group["id"]}, headers=owner)
    assert moved.status_code == 200 and moved.json()["group_id"] == group["id"]
    out = client.patch(f"/api/v1/tags/{tag_id}", json={"group_id": ""}, headers=owner)
    assert out.status_code == 200, out.text
    assert out.json()["group_id"] is None
    # A group that does not exist is still a clear 404, not a 500.
    missing = client.post(
        "/api/v1/tags", json={"group_id": "tgg_nope", "name": "宝妈"}, headers=owner
    )
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "tag_group_not_found"
