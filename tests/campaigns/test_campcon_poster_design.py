"""The poster designer: a design (text, colours, background upload) stored per campaign,
checked uploads, the operator's preview and the participant's poster drawn from one design,
lint on the poster's copy, the signed phone preview — on SQLite and PostgreSQL."""

from __future__ import annotations

import io
from typing import Any

from fission_helpers import INVITE, create, join
from PIL import Image

BAD_COPY = "转发到三个微信群即可参与"


def _png(width: int, height: int, colour: tuple[int, int, int], fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buf, format=fmt)
    return buf.getvalue()


def _upload(client: Any, owner: dict[str, str], cid: str, raw: bytes, ctype: str) -> Any:
    return client.post(
        f"/api/v1/campaigns/{cid}/poster/background",
        content=raw,
        headers={**owner, "Content-Type": ctype},
    )


def _pixel(png: bytes, xy: tuple[int, int]) -> tuple[int, int, int]:
    with Image.open(io.BytesIO(png)) as img:
        px = img.convert("RGB").getpixel(xy)
    assert isinstance(px, tuple)
    return (int(px[0]), int(px[1]), int(px[2]))


def _close(a: tuple[int, int, int], b: tuple[int, int, int], tol: int = 6) -> bool:
    return all(abs(x - y) <= tol for x, y in zip(a, b, strict=True))


def test_design_colours_text_and_background_reach_every_poster(
    client: Any, owner: dict[str, str]
) -> None:
    cid = create(client, owner, "invite", INVITE, name="周三秒杀")
    base = f"/api/v1/campaigns/{cid}"
    got = client.get(base + "/poster", headers=owner)
    assert got.status_code == 200, got.text
    assert got.json()["design"]["background_color"] == "#FFF4E6"
    design = {
        "headline": "邀请好友，一起领好礼",
        "body": "每邀请一位新朋友得 5 元券",
        "background_color": "#123456",
        "gradient_to": None,
        "text_color": "#FFFFFF",
        "accent_color": "#FFD43B",
    }
    saved = client.put(base + "/poster", json=design, headers=owner)
    assert saved.status_code == 200, saved.text
    assert saved.json()["lint"]["ok"] is True
    preview = client.post(base + "/poster/preview", headers=owner)
    assert preview.status_code == 200 and preview.headers["content-type"] == "image/png"
    assert _pixel(preview.content, (5, 5)) == (0x12, 0x34, 0x56)
    with Image.open(io.BytesIO(preview.content)) as img:
        assert img.size == (750, 1334)
    # An unsaved edit previews without being stored.
    red_bg = client.post(
        base + "/poster/preview", json={**design, "background_color": "#FF0000"}, headers=owner
    )
    assert _pixel(red_bg.content, (5, 5)) == (255, 0, 0)
    assert client.get(base + "/poster", headers=owner).json()["design"]["background_color"] == (
        "#123456"
    )

    # A background image covers the colours, on the participant's poster too.
    up = _upload(client, owner, cid, _png(900, 1600, (20, 200, 40)), "image/png")
    assert up.status_code == 201, up.text
    name = up.json()["name"]
    assert name.endswith(".jpg") and (up.json()["width"], up.json()["height"]) == (900, 1600)
    assert (
        client.put(
            base + "/poster", json={**design, "background_image": name}, headers=owner
        ).status_code
        == 200
    )
    alice = join(client, owner, cid, "alice").json()
    poster = client.get(f"{base}/participants/{alice['participant_id']}/poster.png", headers=owner)
    assert poster.status_code == 200
    assert _close(_pixel(poster.content, (5, 5)), (20, 200, 40))

    log = client.get(base + "/changes", headers=owner).json()["items"]
    assert log[0]["action"] == "poster" and log[0]["after"] == {"background_image": name}
    assert log[1]["action"] == "poster" and log[1]["after"]["background_color"] == "#123456"
    # A duplicate keeps the design.
    copy = client.post(base + "/duplicate", headers=owner).json()
    copied = client.get(f"/api/v1/campaigns/{copy['id']}/poster", headers=owner).json()
    assert copied["design"]["background_image"] == name


def test_uploads_are_checked_and_nothing_is_written_on_refusal(
    client: Any, owner: dict[str, str], settings: Any
) -> None:
    cid = create(client, owner, "invite", INVITE)
    folder = settings.data_dir / "uploads" / "posters"
    cases = [
        (b"hello", "text/plain", 415, "unsupported_image_type"),
        (_png(400, 400, (1, 2, 3), "GIF"), "image/gif", 415, "unsupported_image_type"),
        (_png(400, 400, (1, 2, 3)), "image/jpeg", 422, "invalid_image"),  # PNG sent as JPEG
        (_png(100, 100, (1, 2, 3)), "image/png", 422, "image_dimensions"),
        (_png(5000, 300, (1, 2, 3)), "image/png", 422, "image_dimensions"),
        (_png(600, 600, (1, 2, 3))[:200], "image/png", 422, "invalid_image"),  # truncated
        (b"", "image/png", 422, "invalid_image"),
        (b"\x89PNG" + b"\0" * (5 * 1024 * 1024 + 10), "image/png", 413, "image_too_large"),
    ]
    for raw, ctype, status, code in cases:
        resp = _upload(client, owner, cid, raw, ctype)
        assert resp.status_code == status, (ctype, resp.text)
        assert resp.json()["error"]["code"] == code
    assert not folder.exists() or not any(folder.rglob("*.jpg"))
    # WebP and JPEG are fine; the stored file is a re-encoded JPEG named by its hash.
    for fmt, ctype in (("WEBP", "image/webp"), ("JPEG", "image/jpeg")):
        ok = _upload(client, owner, cid, _png(640, 640, (9, 9, 9), fmt), ctype)
        assert ok.status_code == 201, ok.text
    stored = list(folder.rglob("*.jpg"))
    assert stored and all(p.read_bytes()[:3] == b"\xff\xd8\xff" for p in stored)
    # A design can only name an upload of its own workspace, by its exact stored name.
    for bad in ("../../secret.key", "0" * 64 + ".jpg", "a.png"):
        resp = client.put(
            f"/api/v1/campaigns/{cid}/poster", json={"background_image": bad}, headers=owner
        )
        assert resp.status_code == 422, resp.text
    missing = client.post("/api/v1/campaigns/cmp_nope/poster/background", content=_png(400, 400, (0, 0, 0)),
                          headers={**owner, "Content-Type": "image/png"})  # fmt: skip
    assert missing.status_code == 404


def test_poster_copy_is_linted_and_blocks_going_live(client: Any, owner: dict[str, str]) -> None:
    draft = client.post(
        "/api/v1/campaigns",
        json={"type": "invite", "name": "草稿", "config": INVITE, "status": "draft"},
        headers=owner,
    ).json()
    base = f"/api/v1/campaigns/{draft['id']}"
    saved = client.put(base + "/poster", json={"headline": BAD_COPY}, headers=owner)
    assert saved.status_code == 200, saved.text
    assert saved.json()["lint"]["ok"] is False
    assert saved.json()["lint"]["findings"][0]["field"] == "poster.headline"
    refused = client.post(base + "/launch", headers=owner)
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "copy_lint_error"
    assert (
        client.put(base + "/poster", json={"headline": "一起来拼"}, headers=owner).status_code
        == 200
    )
    assert client.post(base + "/launch", headers=owner).status_code == 200
    live = client.put(base + "/poster", json={"body": BAD_COPY}, headers=owner)
    assert live.status_code == 422 and live.json()["error"]["code"] == "copy_lint_error"


def test_signed_phone_preview(client: Any, owner: dict[str, str]) -> None:
    cid = create(client, owner, "invite", INVITE, name="原名")
    link = client.get(f"/api/v1/campaigns/{cid}/preview-link", headers=owner)
    assert link.status_code == 200, link.text
    url = link.json()["url"]
    page = client.get(url + "&name=新名字<b>x</b>")
    assert page.status_code == 200, page.text
    assert "新名字&lt;b&gt;x&lt;/b&gt;" in page.text and "原名" not in page.text
    assert "frame-ancestors 'self'" in page.headers["content-security-policy"]
    assert "script-src 'none'" in page.headers["content-security-policy"]
    forged = client.get(url.replace("sig=", "sig=0"))
    assert forged.status_code == 403 and "预览链接已过期" in forged.text
    # Nothing was stored by previewing.
    assert client.get(f"/api/v1/campaigns/{cid}", headers=owner).json()["name"] == "原名"
