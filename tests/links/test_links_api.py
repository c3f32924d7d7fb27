from __future__ import annotations

from typing import Any

import pytest

from testkit import make_key


def _create(client: Any, headers: dict[str, str], **body: Any) -> Any:
    return client.post("/api/v1/links", json=body, headers=headers)


def test_create_answers_201_with_short_url(client: Any, owner: dict[str, str]) -> None:
    resp = _create(
        client,
        owner,
        url="https://shop.example.cn/item/1",
        channel="wx_group_01",
        tags=["秋季", "a"],
    )
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert body["id"].startswith("lnk_")
    assert body["short_url"] == f"http://sho.rt/{body['slug']}"
    assert body["url"] == "https://shop.example.cn/item/1"
    assert body["tags"] == ["a", "秋季"]
    assert len(body["slug"]) == 7


def test_custom_slug_collision_and_reserved(
    client: Any, owner: dict[str, str], runtime: Any
) -> None:
    assert _create(client, owner, url="https://a.cn", slug="sale").status_code == 201
    dup = _create(client, owner, url="https://b.cn", slug="sale")
    assert dup.status_code == 409
    assert dup.json()["error"]["code"] == "slug_taken"
    # Slugs are one namespace across workspaces (see docs/decisions/0001-slug-namespace.md).
    _, other = make_key(runtime, "owner")
    assert _create(client, other, url="https://b.cn", slug="sale").status_code == 409
    for reserved in ("api", "admin", "static", "API"):
        resp = _create(client, owner, url="https://a.cn", slug=reserved)
        assert resp.status_code == 422, reserved
        assert resp.json()["error"]["code"] == "reserved_slug"
    assert _create(client, owner, url="https://a.cn", slug="has space").status_code == 422


@pytest.mark.parametrize(
    "url",
    ["javascript:alert(1)", "data:text/html,hi", "file:///etc/passwd", "ftp://x.cn/a", "https://", "//x.cn",
     "https://user:pw@bank.cn/", "not a url"],
)  # fmt: skip
def test_bad_destinations_are_refused(client: Any, owner: dict[str, str], url: str) -> None:
    resp = _create(client, owner, url=url)
    assert resp.status_code == 422
    assert resp.json()["error"]["message"]


def test_blocklisted_host_is_refused(client: Any, owner: dict[str, str], runtime: Any) -> None:
    runtime.settings.url_blocklist = ["evil.example"]
    resp = _create(client, owner, url="https://login.evil.example/x")
    assert resp.status_code == 422
    assert resp.json()["error"]["code"] == "blocked_host"
    variant = _create(
        client,
        owner,
        url="https://ok.cn",
        variants=[
            {"url": "https://ok.cn/a", "weight": 1},
            {"url": "https://evil.example", "weight": 1},
        ],
    )
    assert variant.status_code == 422
    assert "variants[1].url" in variant.json()["error"]["message"]


def test_unknown_field_is_422_naming_it(client: Any, owner: dict[str, str]) -> None:
    resp = _create(client, owner, url="https://a.cn", destination="https://b.cn")
    assert resp.status_code == 422
    assert resp.json()["error"]["details"][0]["field"] == "destination"


def test_get_update_delete_roundtrip(client: Any, owner: dict[str, str]) -> None:
    link = _create(
        client, owner, url="https://a.cn", password="secret-1", utm={"source": "wechat"}
    ).json()
    assert link["has_password"] is True
    got = client.get(f"/api/v1/links/{link['id']}", headers=owner).json()
    assert got["utm"] == {"source": "wechat"} and "password" not in got
    patched = client.patch(
        f"/api/v1/links/{link['id']}",
        json={"url": "https://b.cn", "tags": ["x"], "password": None},
        headers=owner,
    )
    assert patched.status_code == 200
    assert patched.json()["url"] == "https://b.cn"
    assert patched.json()["tags"] == ["x"]
    assert patched.json()["has_password"] is False
    assert patched.json()["utm"] == {"source": "wechat"}
    assert (
        client.patch(
            f"/api/v1/links/{link['id']}", json={"url": "javascript:x"}, headers=owner
        ).status_code
        == 422
    )
    assert client.delete(f"/api/v1/links/{link['id']}", headers=owner).status_code == 204
    assert client.get(f"/api/v1/links/{link['id']}", headers=owner).status_code == 404
    # The slug is free again after delete.
    assert _create(client, owner, url="https://c.cn", slug=link["slug"]).status_code == 201


def test_list_filters_and_paginates(client: Any, owner: dict[str, str]) -> None:
    for i in range(5):
        _create(
            client,
            owner,
            url=f"https://a.cn/{i}",
            channel="ch_a" if i % 2 else "ch_b",
            tags=["t"] if i < 2 else [],
            title=f"标题{i}",
        )
    by_channel = client.get("/api/v1/links?channel=ch_a", headers=owner).json()["items"]
    assert len(by_channel) == 2
    by_tag = client.get("/api/v1/links?tag=t", headers=owner).json()["items"]
    assert {i["url"] for i in by_tag} == {"https://a.cn/0", "https://a.cn/1"}
    search = client.get("/api/v1/links", params={"q": "标题3"}, headers=owner).json()["items"]
    assert [i["url"] for i in search] == ["https://a.cn/3"]
    page1 = client.get("/api/v1/links?limit=2", headers=owner).json()
    page2 = client.get(f"/api/v1/links?limit=2&cursor={page1['next_cursor']}", headers=owner).json()
    page3 = client.get(f"/api/v1/links?limit=2&cursor={page2['next_cursor']}", headers=owner).json()
    ids = [i["id"] for p in (page1, page2, page3) for i in p["items"]]
    assert len(ids) == 5 == len(set(ids))
    assert page3["next_cursor"] is None
    assert client.get("/api/v1/links?limit=0", headers=owner).status_code == 422
    assert client.get("/api/v1/links?cursor=%%%", headers=owner).status_code == 422


def test_workspace_isolation(client: Any, owner: dict[str, str], runtime: Any) -> None:
    mine = _create(client, owner, url="https://a.cn", tags=["shared-tag"]).json()
    _, other = make_key(runtime, "owner")
    assert client.get(f"/api/v1/links/{mine['id']}", headers=other).status_code == 404
    assert (
        client.patch(f"/api/v1/links/{mine['id']}", json={"title": "x"}, headers=other).status_code
        == 404
    )
    assert client.delete(f"/api/v1/links/{mine['id']}", headers=other).status_code == 404
    assert client.get("/api/v1/links?tag=shared-tag", headers=other).json()["items"] == []


def test_roles(client: Any, owner: dict[str, str], runtime: Any) -> None:
    ws = client.get("/api/v1/workspace", headers=owner).json()["id"]
    _, viewer = make_key(runtime, "viewer", ws)
    assert _create(client, viewer, url="https://a.cn").status_code == 403
    assert client.get("/api/v1/links", headers=viewer).status_code == 200


def test_bulk_json_all_or_nothing(client: Any, owner: dict[str, str]) -> None:
    _create(client, owner, url="https://a.cn", slug="taken")
    rows = [
        {"url": "https://ok.cn/1"},
        {"url": "javascript:alert(1)"},
        {"url": "https://ok.cn/3", "slug": "dup"},
        {"url": "https://ok.cn/4", "slug": "dup"},
        {"url": "https://ok.cn/5", "slug": "taken"},
        {"url": "https://ok.cn/6", "colour": "red"},
    ]
    resp = client.post("/api/v1/links/bulk", json={"links": rows}, headers=owner)
    assert resp.status_code == 422
    err = resp.json()["error"]
    assert err["code"] == "bulk_rejected"
    assert sorted({d["row"] for d in err["details"]}) == [2, 4, 5, 6]
    assert len(client.get("/api/v1/links", headers=owner).json()["items"]) == 1  # nothing written
    good = client.post(
        "/api/v1/links/bulk",
        json={
            "links": [{"url": f"https://ok.cn/{i}", "tags": ["b"]} for i in range(300)],
            "return_items": True,
        },
        headers=owner,
    )
    assert good.status_code == 201
    assert good.json()["created"] == 300
    assert len({i["slug"] for i in good.json()["items"]}) == 300
    assert len(client.get("/api/v1/links?tag=b&limit=500", headers=owner).json()["items"]) == 300


def test_bulk_limit(client: Any, owner: dict[str, str]) -> None:
    resp = client.post(
        "/api/v1/links/bulk", json={"links": [{"url": "https://a.cn"}] * 10_001}, headers=owner
    )
    assert resp.status_code == 422
    assert resp.json()["error"]["code"] == "bulk_too_large"


def test_bulk_csv_import_and_export_roundtrip(client: Any, owner: dict[str, str]) -> None:
    csv_text = (
        "url,slug,channel,tags,utm_source,max_clicks,allowed_platforms\n"
        "https://a.cn/1,csv-one,群1,秋季|新客,wechat,10,wechat|qq\n"
        "https://a.cn/2,,群2,,,,\n"
    )
    resp = client.post(
        "/api/v1/links/bulk/csv",
        content=csv_text.encode(),
        headers={**owner, "content-type": "text/csv"},
    )
    assert resp.status_code == 201, resp.text
    assert resp.json()["created"] == 2
    one = client.get("/api/v1/links?q=csv-one", headers=owner).json()["items"][0]
    assert (
        one["tags"] == ["新客", "秋季"]
        and one["max_clicks"] == 10
        and one["allowed_platforms"] == ["wechat", "qq"]
    )
    assert one["utm"] == {"source": "wechat"}
    exported = client.get("/api/v1/links/export.csv", headers=owner)
    assert exported.status_code == 200
    text = exported.content.decode("utf-8-sig")
    assert text.splitlines()[0].startswith("url,slug,")
    assert "csv-one" in text and "秋季" in text


def test_bulk_csv_bad_rows_name_each(client: Any, owner: dict[str, str]) -> None:
    bad = "url,slug,max_clicks\nhttps://a.cn,ok-1,5\njavascript:x,,\nhttps://a.cn,,-3\nhttps://a.cn,x,1,extra\n"
    resp = client.post(
        "/api/v1/links/bulk/csv",
        content=bad.encode(),
        headers={**owner, "content-type": "text/csv"},
    )
    assert resp.status_code == 422
    assert [d["row"] for d in resp.json()["error"]["details"]] == [
        4
    ]  # malformed shape is caught first
    bad2 = "url,slug,max_clicks\nhttps://a.cn,ok-1,5\njavascript:x,,\nhttps://a.cn,,-3\n"
    resp2 = client.post(
        "/api/v1/links/bulk/csv",
        content=bad2.encode(),
        headers={**owner, "content-type": "text/csv"},
    )
    assert sorted({d["row"] for d in resp2.json()["error"]["details"]}) == [2, 3]
    unknown = client.post(
        "/api/v1/links/bulk/csv",
        content=b"link,slug\nhttps://a.cn,x\n",
        headers={**owner, "content-type": "text/csv"},
    )
    assert unknown.status_code == 422
    assert client.get("/api/v1/links", headers=owner).json()["items"] == []
    latin1 = client.post(
        "/api/v1/links/bulk/csv",
        content="url,title\nhttps://a.cn,caf\xe9\n".encode("latin-1"),
        headers={**owner, "content-type": "text/csv"},
    )
    assert latin1.status_code == 422 and "UTF-8" in latin1.json()["error"]["message"]


def test_expired_url_requires_a_limit(client: Any, owner: dict[str, str]) -> None:
    resp = _create(client, owner, url="https://a.cn", expired_url="https://a.cn/over")
    assert resp.status_code == 422
    naive = _create(client, owner, url="https://a.cn", expires_at="2030-01-01T00:00:00")
    assert naive.status_code == 422  # a time without a zone is ambiguous


def test_qr_url_is_absolute_like_a_live_codes(client: Any, owner: dict[str, str]) -> None:
    link = _create(client, owner, url="https://example.com/qr").json()
    assert link["qr_url"] == f"http://sho.rt/api/v1/links/{link['id']}/qr"
    listed = client.get("/api/v1/links", headers=owner).json()["items"][0]
    assert listed["qr_url"] == link["qr_url"]
    bulk = client.post(
        "/api/v1/links/bulk",
        json={"links": [{"url": "https://example.com/b"}], "return_items": True},
        headers=owner,
    ).json()
    assert bulk["items"][0]["qr_url"].startswith("http://sho.rt/api/v1/links/lnk_")
    live = client.post("/api/v1/live-codes", json={"name": "群"}, headers=owner).json()
    assert live["qr_url"].startswith("http://sho.rt/api/v1/live-codes/")
    png = client.get(link["qr_url"].removeprefix("http://sho.rt"), headers=owner)
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG")


def test_url_without_scheme_says_what_to_write(client: Any, owner: dict[str, str]) -> None:
    for url in ("shop.example.cn/item/1", "shop.example.cn:8080/x"):
        resp = _create(client, owner, url=url)
        assert resp.status_code == 422, resp.text
        error = resp.json()["error"]
        assert error["code"] == "missing_scheme"
        assert f"https://{url}" in error["message"] and "网址需以" in error["message"]
        assert "no scheme" not in error["message"]
    js = _create(client, owner, url="javascript:alert(1)").json()["error"]
    assert js["code"] == "bad_scheme"
