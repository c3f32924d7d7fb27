from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
import zxingcpp
from PIL import Image, ImageFont

from liebian.campaigns import poster as poster_mod
from liebian.campaigns.poster import (
    PosterContent,
    PosterFontMissing,
    PosterTemplate,
    drawable_text,
    find_font_path,
    lines_fit,
    load_font,
    render_poster,
    render_poster_image,
    text_has_ink,
    wrap_text,
)

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
LATIN_FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
URL = "https://lb.example.com/i/Xy7Kq2?utm_source=poster&c=cmp_01J9"


def _avatar(color: tuple[int, int, int] = (20, 110, 200)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (240, 180), color).save(buf, "JPEG")
    return buf.getvalue()


def _content(**kw: object) -> PosterContent:
    base: dict[str, object] = {
        "url": URL,
        "headline": "邀请3位好友，领取1对1试听课",
        "body": "资深老师一对一诊断学习问题，制定专属学习计划。扫码注册即可预约，名额有限。",
        "nickname": "王小明",
        "avatar": _avatar(),
    }
    base.update(kw)
    return PosterContent(**base)  # type: ignore[arg-type]


def _decode(img: Image.Image) -> list[str]:
    return [r.text for r in zxingcpp.read_barcodes(img)]


def test_poster_png_has_template_size_and_decodable_qr() -> None:
    data = render_poster(PosterTemplate(), _content())
    assert data.startswith(b"\x89PNG")
    img = Image.open(io.BytesIO(data))
    assert img.size == (750, 1334)
    assert _decode(img) == [URL]
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "poster-sample.png").write_bytes(data)


def test_other_sizes_scale_and_still_decode() -> None:
    for size in [(1080, 1920), (500, 900)]:
        tpl = PosterTemplate(width=size[0], height=size[1], gradient_to=None)
        img = render_poster_image(tpl, _content(avatar=None))
        assert img.size == size
        assert _decode(img) == [URL]


def test_cjk_glyphs_have_ink_with_the_poster_font_and_not_with_a_latin_font() -> None:
    cjk = load_font(find_font_path(), 36)
    assert text_has_ink("王小明邀请你一起参加", cjk)
    if os.path.exists(LATIN_FONT):
        assert not text_has_ink("王小明", ImageFont.truetype(LATIN_FONT, 36))
        assert text_has_ink("Wang", ImageFont.truetype(LATIN_FONT, 36))


def test_nickname_region_is_drawn() -> None:
    tpl = PosterTemplate(gradient_to=None)
    with_name = render_poster_image(tpl, _content())
    without = render_poster_image(tpl, _content(nickname=None))
    region = (180, 72, 700, 180)  # right of the avatar
    a, b = with_name.crop(region), without.crop(region)
    assert a.tobytes() != b.tobytes()
    # Dark ink pixels present where the name is written.
    assert a.convert("L").getextrema()[0] < 100
    assert b.convert("L").getextrema()[0] > 200


def test_avatar_is_cropped_to_a_circle() -> None:
    tpl = PosterTemplate(background_color="#FFFFFF", gradient_to=None)
    img = render_poster_image(tpl, _content(nickname=None))
    # Avatar box is (56, 72)–(160, 176): centre is avatar blue, box corner is background.
    assert img.getpixel((108, 124)) == pytest.approx((20, 110, 200), abs=12)
    assert img.getpixel((58, 74)) == (255, 255, 255)


def test_background_image_is_used_and_reloaded_when_replaced(tmp_path: Path) -> None:
    bg = tmp_path / "bg.png"
    Image.new("RGB", (400, 400), (10, 200, 30)).save(bg)
    tpl = PosterTemplate(background_image=str(bg))
    img = render_poster_image(tpl, _content(avatar=None, nickname=None))
    assert img.getpixel((5, 5)) == (10, 200, 30)
    assert _decode(img) == [URL]
    Image.new("RGB", (400, 400), (200, 10, 30)).save(bg)
    os.utime(bg, (1_000_000_000, 1_000_000_000))
    img = render_poster_image(tpl, _content(avatar=None, nickname=None))
    assert img.getpixel((5, 5)) == (200, 10, 30)


def test_chinese_wraps_by_width_without_spaces() -> None:
    font = load_font(find_font_path(), 32)
    text = "近十年真题逐题解析，附高频词汇表。扫码添加老师，免费领取电子版。" * 2
    lines = wrap_text(text, font, 400)
    assert len(lines) > 3
    assert "".join(lines) == text
    assert lines_fit(lines, font, 400)
    assert not any(line[0] in "，。" for line in lines)


def test_latin_words_are_not_split_and_long_lines_are_truncated() -> None:
    font = load_font(find_font_path(), 32)
    lines = wrap_text("学习 Python programming 和 JavaScript 开发", font, 260)
    assert any("programming" in line for line in lines)
    assert all(w in " ".join(lines) for w in ["Python", "programming", "JavaScript"])
    short = wrap_text("很长的文字" * 40, font, 300, max_lines=2)
    assert len(short) == 2 and short[-1].endswith("…")
    # An over-long token (a URL) is split rather than overflowing.
    url_lines = wrap_text("https://example.com/" + "a" * 80, font, 300)
    assert lines_fit(url_lines, font, 300)


def test_text_is_text_not_markup_and_controls_are_dropped() -> None:
    path = find_font_path()
    assert drawable_text("<b>小明</b>", path) == "<b>小明</b>"
    assert drawable_text("小\u202e明\u200b", path) == "小明"  # bidi override, zero width
    assert drawable_text("小明🎓😀", path) == "小明"  # emoji: no glyph in CJK fonts
    img = render_poster_image(PosterTemplate(), _content(nickname="<img src=x onerror=alert(1)>"))
    assert _decode(img) == [URL]


def test_missing_font_explains_how_to_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LIEBIAN_POSTER_FONT", raising=False)
    monkeypatch.setattr(poster_mod, "KNOWN_FONT_PATHS", ("/nonexistent/font.ttc",))
    with pytest.raises(PosterFontMissing) as err:
        find_font_path()
    assert "apt-get install fonts-noto-cjk" in err.value.message
    monkeypatch.setenv("LIEBIAN_POSTER_FONT", "/nonexistent/other.ttf")
    with pytest.raises(PosterFontMissing, match="LIEBIAN_POSTER_FONT"):
        find_font_path()


def test_font_override(monkeypatch: pytest.MonkeyPatch) -> None:
    real = find_font_path()
    monkeypatch.setenv("LIEBIAN_POSTER_FONT", real)
    assert find_font_path() == real
    assert find_font_path(override=real) == real


def test_simplified_chinese_face_is_chosen_from_collections() -> None:
    path = find_font_path()
    if path.endswith(".ttc") and "Noto" in path:
        assert load_font(path, 20).getname()[0] == "Noto Sans CJK SC"


def test_missing_url_is_rejected() -> None:
    with pytest.raises(ValueError):
        render_poster(PosterTemplate(), _content(url=""))
