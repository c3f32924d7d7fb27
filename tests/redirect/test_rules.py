"""Pure rule functions: destination compilation, rule order, A/B weights, unlock tokens."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

from liebian.redirect.cache import compile_destination, compile_link
from liebian.redirect.rules import (
    Outcome,
    check_unlock,
    choose,
    gate,
    unlock_token,
    variant_bucket,
)


def row(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": "lnk_1",
        "workspace_id": "ws_1",
        "url": "https://example.com/",
        "channel": None,
        "campaign_id": None,
        "utm": {},
        "expires_at": None,
        "expired_url": None,
        "max_clicks": None,
        "password_hash": None,
        "allowed_platforms": None,
        "ios_url": None,
        "android_url": None,
        "variants": None,
        "browser_guide": False,
    }
    base.update(over)
    return base


def test_compile_destination() -> None:
    assert compile_destination("https://e.com", None) == ("https://e.com/?lb_cid=", "")
    prefix, suffix = compile_destination(
        "https://e.com/路径?a=1&lb_cid=old&utm_medium=x#f", {"medium": "群", "source": None}
    )
    assert prefix == "https://e.com/%E8%B7%AF%E5%BE%84?a=1&utm_medium=%E7%BE%A4&lb_cid="
    assert suffix == "#f"


def test_gate_order() -> None:
    everything = compile_link(
        row(
            expires_at="2000-01-01 00:00:00",
            password_hash="$argon2id$x",
            allowed_platforms=["qq"],
            browser_guide=True,
        )
    )
    args: dict[str, Any] = {"now": 1e9, "spent": False, "platform": "wechat", "unlocked": False}
    assert gate(everything, **args) is Outcome.EXPIRED
    everything.expires_at = None
    assert gate(everything, **{**args, "spent": True}) is Outcome.EXPIRED
    assert gate(everything, **args) is Outcome.NOT_ALLOWED
    everything.allowed = None
    assert gate(everything, **args) is Outcome.GUIDE
    assert gate(everything, **{**args, "platform": "browser"}) is Outcome.PASSWORD
    assert gate(everything, **{**args, "platform": "browser", "unlocked": True}) is None


def test_variant_weights_are_respected() -> None:
    rng = random.Random(20240601)
    visitors = [
        "".join(rng.choices("abcdefghijklmnopqrstuvwxyz0123456789", k=16)) for _ in range(8000)
    ]
    counts = Counter(variant_bucket("lnk_ab", v, 4) < 1 for v in visitors)
    share_a = counts[True] / len(visitors)
    # Expected 0.25; the standard error is ~0.005, so ±0.03 is six of them.
    assert abs(share_a - 0.25) < 0.03
    # Sticky: the same visitor and link always give the same bucket.
    assert all(
        variant_bucket("lnk_ab", v, 4) == variant_bucket("lnk_ab", v, 4) for v in visitors[:50]
    )


def test_choose_device_and_harmonyos() -> None:
    e = compile_link(row(ios_url="https://i.example/", android_url="https://a.example/"))
    assert choose(e, visitor_id="v", os="ios", android_compatible=False)[0].startswith("https://i.")
    assert choose(e, visitor_id="v", os="android", android_compatible=False)[0].startswith(
        "https://a."
    )
    assert choose(e, visitor_id="v", os="harmonyos", android_compatible=True)[0].startswith(
        "https://a."
    )
    assert choose(e, visitor_id="v", os="harmonyos", android_compatible=False)[0].startswith(
        "https://example.com/"
    )


def test_unlock_tokens() -> None:
    secret = b"k" * 32
    e = compile_link(row(password_hash="$argon2id$one"))
    token = unlock_token(secret, e, now=1000.0)
    assert check_unlock(secret, e, token, now=1000.0)
    assert not check_unlock(secret, e, token, now=1000.0 + 2 * 24 * 3600)  # expired
    assert not check_unlock(b"x" * 32, e, token, now=1000.0)  # another secret
    other = compile_link(row(id="lnk_2", password_hash="$argon2id$one"))
    assert not check_unlock(secret, other, token, now=1000.0)  # another link
    e.password_hash = "$argon2id$two"
    assert not check_unlock(secret, e, token, now=1000.0)  # password changed
    assert not check_unlock(secret, e, "garbage", now=1000.0)


def test_click_line_is_valid_json() -> None:
    import json

    from liebian.links.platforms import classify
    from liebian.redirect.clicks import ClickRecorder, _client_fragment

    e = compile_link(row(channel='渠道"1', utm={"source": "a\\b"}))
    rec = ClickRecorder(spool=None, secret=b"s" * 32)  # type: ignore[arg-type]
    info = classify("Mozilla/5.0 (compatible; Googlebot/2.1)")
    line = rec.line(
        e,
        now=1700000000.5,
        click_id="c" * 16,
        visitor_id="v" * 16,
        info=info,
        client_fragment=_client_fragment(info, force_bot=False),
        head=False,
        referrer='https://r/"</script>',
        ip="1.2.3.4",
        is_qr=True,
    )
    data = json.loads(line)
    assert line.endswith(b"\n")
    assert data["channel"] == '渠道"1' and data["utm_source"] == "a\\b"
    assert data["ts"] == "2023-11-14 22:13:20.500"
    assert data["is_bot"] is True and data["platform"] == "bot" and data["is_qr"] is True
    assert data["referrer"] == 'https://r/"</script>'
    assert data["ip_hash"] != "1.2.3.4" and len(data["ip_hash"]) == 16
