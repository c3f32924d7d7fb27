"""QR endpoints: every PNG is decoded back with zxing-cpp and compared to the short URL + qr=1."""

from __future__ import annotations

import io
from typing import Any

import zxingcpp
from PIL import Image

from liebian.app.runtime import Runtime
from testkit import make_key


def _decode(png: bytes) -> list[str]:
    image = Image.open(io.BytesIO(png))
    image.load()
    return [r.text for r in zxingcpp.read_barcodes(image)]


def _link(client: Any, headers: dict[str, str], slug: str = "spring") -> dict[str, Any]:
    r = client.post(
        "/api/v1/links", json={"url": "https://example.com/a", "slug": slug}, headers=headers
    )
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


def _logo() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (120, 120), (220, 30, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_link_png_decodes_to_the_short_url_with_scan_marker(
    client: Any, owner: dict[str, str]
) -> None:
    link = _link(client, owner)
    r = client.get(f"/api/v1/links/{link['id']}/qr", headers=owner)
    assert r.status_code == 200
    assert r.headers["content-type"] == "image/png"
    assert _decode(r.content) == ["http://sho.rt/spring?qr=1"]
    assert Image.open(io.BytesIO(r.content)).size == (512, 512)

    small = client.get(f"/api/v1/links/{link['id']}/qr", params={"size": 200}, headers=owner)
    assert Image.open(io.BytesIO(small.content)).size == (200, 200)
    assert _decode(small.content) == ["http://sho.rt/spring?qr=1"]


def test_link_svg(client: Any, owner: dict[str, str]) -> None:
    link = _link(client, owner)
    r = client.get(f"/api/v1/links/{link['id']}/qr", params={"format": "svg"}, headers=owner)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("image/svg+xml")
    assert r.content.startswith(b"<svg ") and b'width="512"' in r.content
    assert 'filename="spring.svg"' in r.headers["content-disposition"]


def test_logo_upload(client: Any, owner: dict[str, str]) -> None:
    link = _link(client, owner)
    r = client.post(
        f"/api/v1/links/{link['id']}/qr",
        files={"logo": ("logo.png", _logo(), "image/png")},
        headers=owner,
    )
    assert r.status_code == 200, r.text
    assert _decode(r.content) == ["http://sho.rt/spring?qr=1"]
    # The logo is really there: the centre pixel is the logo's red, not a QR module.
    image = Image.open(io.BytesIO(r.content)).convert("RGB")
    assert image.getpixel((256, 256)) == (220, 30, 30)

    svg = client.post(
        f"/api/v1/links/{link['id']}/qr",
        params={"format": "svg"},
        files={"logo": ("logo.png", _logo(), "image/png")},
        headers=owner,
    )
    assert svg.status_code == 200 and b"data:image/png;base64," in svg.content


def test_bad_parameters_and_logos(client: Any, owner: dict[str, str]) -> None:
    link = _link(client, owner)
    url = f"/api/v1/links/{link['id']}/qr"
    for params in ({"format": "gif"}, {"size": 10}, {"size": 99999}, {"dark": "red"},
                   {"dark": "#ffffff", "light": "#ffffff"}, {"border": 40}):  # fmt: skip
        r = client.get(url, params=params, headers=owner)
        assert r.status_code == 422, (params, r.text)
    not_image = client.post(
        url, files={"logo": ("logo.png", b"this is not a picture", "image/png")}, headers=owner
    )
    assert not_image.status_code == 422 and not_image.json()["error"]["code"] == "invalid_logo"
    too_big = client.post(
        url, files={"logo": ("logo.png", b"\x89PNG" + b"\0" * (1024 * 1024 + 10), "image/png")},
        headers=owner,
    )  # fmt: skip
    assert too_big.status_code == 422 and too_big.json()["error"]["code"] == "invalid_logo"
    missing = client.post(url, headers=owner)
    assert missing.status_code == 422


def test_workspace_scoped_404(client: Any, owner: dict[str, str], runtime: Runtime) -> None:
    link = _link(client, owner)
    _, stranger = make_key(runtime, "owner")
    assert client.get(f"/api/v1/links/{link['id']}/qr", headers=stranger).status_code == 404
    r = client.post(
        f"/api/v1/links/{link['id']}/qr",
        files={"logo": ("logo.png", _logo(), "image/png")},
        headers=stranger,
    )
    assert r.status_code == 404
    assert client.get("/api/v1/links/lnk_nope/qr", headers=owner).status_code == 404
    assert client.get("/api/v1/live-codes/lc_nope/qr", headers=owner).status_code == 404
    assert client.get(f"/api/v1/links/{link['id']}/qr").status_code == 401


def test_qr_follows_the_healthy_domain(client: Any, owner: dict[str, str]) -> None:
    link = _link(client, owner)
    a = client.post(
        "/api/v1/domains", json={"host": "a.example.com", "is_primary": True}, headers=owner
    ).json()
    client.post("/api/v1/domains", json={"host": "b.example.com"}, headers=owner)
    url = f"/api/v1/links/{link['id']}/qr"
    assert _decode(client.get(url, headers=owner).content) == ["https://a.example.com/spring?qr=1"]
    client.post(f"/api/v1/domains/{a['id']}/block", json={"reason": "封禁"}, headers=owner)
    assert _decode(client.get(url, headers=owner).content) == ["https://b.example.com/spring?qr=1"]


def test_live_code_qr(client: Any, owner: dict[str, str], runtime: Runtime) -> None:
    r = client.post(
        "/api/v1/live-codes",
        json={"name": "群", "slug": "moms", "targets": [{"url": "https://e.com", "capacity": 1}]},
        headers=owner,
    )
    live_code = r.json()
    png = client.get(live_code["qr_url"].removeprefix("http://sho.rt"), headers=owner)
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert _decode(png.content) == ["http://sho.rt/moms?qr=1"]
    with_logo = client.post(
        f"/api/v1/live-codes/{live_code['id']}/qr",
        params={"size": 300},
        files={"logo": ("logo.png", _logo(), "image/png")},
        headers=owner,
    )
    assert with_logo.status_code == 200
    assert _decode(with_logo.content) == ["http://sho.rt/moms?qr=1"]
    _, stranger = make_key(runtime, "owner")
    assert (
        client.get(f"/api/v1/live-codes/{live_code['id']}/qr", headers=stranger).status_code == 404
    )
