"""Per-participant fission posters (海报裂变) rendered to PNG with Pillow.

A poster is a template (size, background image or solid/gradient colour, text colour) plus
content (headline, body, nickname, avatar, and the URL behind the QR code). Everything the
participant or operator typed is drawn as plain text: there is no markup, so nothing in a
nickname can change the layout or inject anything.

Speed (target ≤ 50 ms per poster): fonts, the decoded background and the gradient are cached
per process; only the per-participant parts (avatar, nickname, QR) are drawn each time, and
PNG is written with a low zlib level because the poster is sent once and the CPU is shared.
"""

from __future__ import annotations

import io
import os
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import segno
from PIL import Image, ImageDraw, ImageFont, ImageOps

from liebian.kit.errors import DomainError

# Known CJK font locations, most preferred first (Debian/Ubuntu packages, then macOS).
KNOWN_FONT_PATHS: tuple[str, ...] = (
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",  # fonts-noto-cjk
    "/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc",  # Arch, Fedora
    "/usr/share/fonts/google-noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/opentype/noto/NotoSerifCJK-Regular.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",  # fonts-wqy-microhei
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",  # fonts-wqy-zenhei
    "/usr/share/fonts/truetype/arphic/uming.ttc",
    "/System/Library/Fonts/PingFang.ttc",
    "/System/Library/Fonts/STHeiti Medium.ttc",
)
FONT_ENV = "LIEBIAN_POSTER_FONT"

# Characters that must not start a line in Chinese typesetting (避头点): they hang at the end
# of the previous line instead.
_NO_LINE_START = set("，。、；：？！）》」』】〕…—·,.;:?!)]}%’”")
_PNG_COMPRESS_LEVEL = 1


class PosterFontMissing(DomainError):
    status = 500
    code = "poster_font_missing"


@dataclass(frozen=True, slots=True)
class PosterTemplate:
    width: int = 750
    height: int = 1334
    # Local file path of a background image (cover-cropped to the poster size).
    background_image: str | None = None
    background_color: str = "#FFF4E6"
    gradient_to: str | None = "#FFD8A8"  # None → solid colour
    text_color: str = "#3B2A1A"
    accent_color: str = "#E8590C"


@dataclass(frozen=True, slots=True)
class PosterContent:
    url: str  # the participant's personal invite link, encoded in the QR
    headline: str
    body: str = ""
    nickname: str | None = None
    avatar: bytes | None = None  # any image format Pillow reads; cropped to a circle
    caption: str = "长按识别二维码"


# ── fonts ──────────────────────────────────────────────────────────────────────────────────


def find_font_path(override: str | None = None) -> str:
    """The CJK font file to use: explicit override, then $LIEBIAN_POSTER_FONT, then known paths.

    Raises ``PosterFontMissing`` (with the fix) when none exists; rendering Chinese with a Latin
    font would silently produce boxes (豆腐块), which is worse than failing.
    """
    for candidate in (override, os.environ.get(FONT_ENV)):
        if candidate:
            if Path(candidate).is_file():
                return candidate
            raise PosterFontMissing(
                f"poster font {candidate!r} does not exist; fix {FONT_ENV} / settings.poster_font"
            )
    for path in KNOWN_FONT_PATHS:
        if Path(path).is_file():
            return path
    raise PosterFontMissing(
        "no CJK font found for posters: install one (Debian/Ubuntu: "
        "`apt-get install fonts-noto-cjk`) or set LIEBIAN_POSTER_FONT to a .ttf/.otf/.ttc file"
    )


@lru_cache(maxsize=16)
def _face_index(path: str) -> int:
    # Noto CJK collections hold JP, KR, SC, TC, HK faces; Simplified Chinese glyph shapes differ
    # from Japanese ones for many characters, so pick the SC face when there is one.
    if not path.lower().endswith(".ttc"):
        return 0
    for index in range(10):
        try:
            family, _style = ImageFont.truetype(path, 12, index=index).getname()
        except OSError:
            break
        if family and ("SC" in family.split() or "GB" in family):
            return index
    return 0


@lru_cache(maxsize=64)
def load_font(path: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, size, index=_face_index(path))


def _bold_variant(path: str) -> str:
    bold = path.replace("-Regular.", "-Bold.")
    return bold if bold != path and Path(bold).is_file() else path


# ── text layout ────────────────────────────────────────────────────────────────────────────


def clean_text(text: str) -> str:
    """Drop control and format characters (bidi overrides, zero-width joiners…) but keep \\n.

    Such characters are invisible in a form field and would make the rendered text differ from
    what the operator reviewed.
    """
    return "".join(ch for ch in text if ch == "\n" or unicodedata.category(ch)[0] != "C").strip()


@lru_cache(maxsize=8192)
def _has_glyph(path: str, ch: str) -> bool:
    font = load_font(path, 24)
    mask = font.getmask(ch)
    notdef = font.getmask("\U0010fffd")
    return (mask.size, bytes(mask)) != (notdef.size, bytes(notdef))


def drawable_text(text: str, font_path: str) -> str:
    """``clean_text`` minus characters the font has no glyph for.

    WeChat nicknames are full of emoji; CJK fonts have none, and a row of "tofu" boxes looks
    broken. Dropping them keeps the readable part.
    """
    return "".join(ch for ch in clean_text(text) if ch.isspace() or _has_glyph(font_path, ch))


def _tokens(line: str) -> list[str]:
    """Break points: each CJK character alone, Latin words/numbers kept whole, spaces alone."""
    out: list[str] = []
    word = ""
    for ch in line:
        if ch.isascii() and (ch.isalnum() or ch in "-_'./:@#&+%"):
            word += ch
            continue
        if word:
            out.append(word)
            word = ""
        out.append(ch)
    if word:
        out.append(word)
    return out


def wrap_text(
    text: str, font: ImageFont.FreeTypeFont, max_width: int, max_lines: int | None = None
) -> list[str]:
    """Wrap by rendered width, character by character (Chinese has no spaces to break on)."""
    lines: list[str] = []
    for paragraph in clean_text(text).split("\n"):
        current = ""
        for token in _tokens(paragraph):
            candidate = current + token
            if font.getlength(candidate) <= max_width:
                current = candidate
                continue
            if token in _NO_LINE_START and current:
                # Hanging punctuation: slightly past the margin beats a line starting with "，".
                current = candidate
                continue
            if font.getlength(token) > max_width:
                # A single over-long word (a URL): split it by characters.
                for ch in token:
                    if font.getlength(current + ch) > max_width and current:
                        lines.append(current.rstrip())
                        current = ch
                    else:
                        current += ch
                continue
            lines.append(current.rstrip())
            current = token.lstrip()
        lines.append(current.rstrip())
    if max_lines is not None and len(lines) > max_lines:
        kept = lines[:max_lines]
        last = kept[-1]
        while last and font.getlength(last + "…") > max_width:
            last = last[:-1]
        kept[-1] = last + "…"
        return kept
    return lines


# ── backgrounds, avatar, QR ────────────────────────────────────────────────────────────────


def _rgb(color: str) -> tuple[int, int, int]:
    c = color.lstrip("#")
    if len(c) != 6:
        raise ValueError(f"colour must be #RRGGBB, got {color!r}")
    return int(c[0:2], 16), int(c[2:4], 16), int(c[4:6], 16)


@lru_cache(maxsize=32)
def _background(
    width: int,
    height: int,
    color: str,
    gradient_to: str | None,
    image_path: str | None,
    image_mtime: float,
) -> Image.Image:
    # image_mtime is part of the cache key so a replaced background file is picked up.
    del image_mtime
    if image_path:
        with Image.open(image_path) as src:
            img = ImageOps.fit(src.convert("RGB"), (width, height), Image.Resampling.LANCZOS)
        return img
    top = Image.new("RGB", (width, height), _rgb(color))
    if not gradient_to:
        return top
    bottom = Image.new("RGB", (width, height), _rgb(gradient_to))
    mask = Image.linear_gradient("L").resize((width, height))
    return Image.composite(bottom, top, mask)


def _circle_avatar(data: bytes, size: int) -> Image.Image:
    with Image.open(io.BytesIO(data)) as src:
        img = ImageOps.fit(src.convert("RGB"), (size, size), Image.Resampling.LANCZOS)
    mask = _circle_mask(size)
    img.putalpha(mask)
    return img


@lru_cache(maxsize=8)
def _circle_mask(size: int) -> Image.Image:
    # Draw at 4× and downsample: an anti-aliased edge instead of a jagged one.
    big = Image.new("L", (size * 4, size * 4), 0)
    ImageDraw.Draw(big).ellipse((0, 0, size * 4 - 1, size * 4 - 1), fill=255)
    return big.resize((size, size), Image.Resampling.LANCZOS)


def qr_image(url: str, target_px: int) -> Image.Image:
    """QR for ``url`` at the largest integer module scale that fits ``target_px``.

    Integer scaling keeps modules crisp (resampling blurs them and hurts scanning in dim light).
    Error level M tolerates a little damage without making the code dense.
    """
    qr = segno.make(url, error="m", micro=False)
    modules = qr.symbol_size(scale=1, border=2)[0]
    scale = max(1, target_px // modules)
    buf = io.BytesIO()
    qr.save(buf, kind="png", scale=scale, border=2)
    buf.seek(0)
    return Image.open(buf).convert("RGB")


# ── rendering ──────────────────────────────────────────────────────────────────────────────


def render_poster_image(
    template: PosterTemplate, content: PosterContent, *, font_path: str | None = None
) -> Image.Image:
    """Draw the poster and return it as an RGB image (see ``render_poster`` for PNG bytes)."""
    if not content.url:
        raise ValueError("poster needs a url for its QR code")
    w, h = template.width, template.height
    u = w / 750  # layout unit: the design is specified at 750 px wide
    regular = find_font_path(font_path)
    bold = _bold_variant(regular)
    bg_path = template.background_image
    mtime = Path(bg_path).stat().st_mtime if bg_path else 0.0
    img = _background(w, h, template.background_color, template.gradient_to, bg_path, mtime).copy()
    draw = ImageDraw.Draw(img)
    ink = _rgb(template.text_color)
    accent = _rgb(template.accent_color)
    margin = round(56 * u)
    y = round(72 * u)

    # Header: avatar + nickname ("who invites you" is what makes a poster personal).
    avatar_size = round(104 * u)
    text_x = margin
    if content.avatar:
        img.paste(avatar := _circle_avatar(content.avatar, avatar_size), (margin, y), avatar)
        text_x = margin + avatar_size + round(24 * u)
    nickname = drawable_text(content.nickname or "", bold)
    if nickname:
        name_font = load_font(bold, round(36 * u))
        name_lines = wrap_text(nickname, name_font, w - text_x - margin, max_lines=1)
        draw.text((text_x, y + round(10 * u)), name_lines[0], font=name_font, fill=ink)
        draw.text(
            (text_x, y + round(60 * u)),
            "邀请你一起参加",
            font=load_font(regular, round(26 * u)),
            fill=ink,
        )
    y += avatar_size + round(88 * u)

    # Headline and body.
    headline_font = load_font(bold, round(64 * u))
    headline = drawable_text(content.headline, bold)
    for line in wrap_text(headline, headline_font, w - 2 * margin, max_lines=3):
        draw.text((margin, y), line, font=headline_font, fill=accent)
        y += round(84 * u)
    y += round(24 * u)
    body_font = load_font(regular, round(32 * u))
    body = drawable_text(content.body, regular)
    if body:
        for line in wrap_text(body, body_font, w - 2 * margin, max_lines=6):
            draw.text((margin, y), line, font=body_font, fill=ink)
            y += round(50 * u)

    # QR card anchored to the bottom so long copy cannot push it off the poster.
    qr_target = round(300 * u)
    qr = qr_image(content.url, qr_target)
    card_pad = round(24 * u)
    caption_h = round(56 * u)
    card_w = qr.width + 2 * card_pad
    card_h = qr.height + 2 * card_pad + caption_h
    card_x = (w - card_w) // 2
    card_y = h - card_h - round(72 * u)
    draw.rounded_rectangle(
        (card_x, card_y, card_x + card_w, card_y + card_h),
        radius=round(20 * u),
        fill=(255, 255, 255),
    )
    img.paste(qr, (card_x + card_pad, card_y + card_pad))
    caption_font = load_font(regular, round(26 * u))
    caption = drawable_text(content.caption, regular)
    cw = caption_font.getlength(caption)
    draw.text(
        ((w - cw) / 2, card_y + card_pad + qr.height + round(8 * u)),
        caption,
        font=caption_font,
        fill=(90, 90, 90),
    )
    return img


def render_poster(
    template: PosterTemplate, content: PosterContent, *, font_path: str | None = None
) -> bytes:
    """The poster as PNG bytes."""
    img = render_poster_image(template, content, font_path=font_path)
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=_PNG_COMPRESS_LEVEL)
    return buf.getvalue()


def text_has_ink(text: str, font: ImageFont.FreeTypeFont) -> bool:
    """True when every non-space character of ``text`` draws some pixels with ``font``.

    Used by tests and by the operator's preview: a font without CJK glyphs draws nothing (or
    a .notdef box, caught by comparing against a known-missing glyph) for Chinese text.
    """
    notdef = font.getmask("\U0010fffd")  # a private-use codepoint no font maps
    notdef_key = (notdef.size, bytes(notdef))
    for ch in text:
        if ch.isspace():
            continue
        mask = font.getmask(ch)
        if not mask.getbbox() or (mask.size, bytes(mask)) == notdef_key:
            return False
    return True


def lines_fit(lines: Sequence[str], font: ImageFont.FreeTypeFont, max_width: int) -> bool:
    """Whether every line is within ``max_width`` (punctuation may hang by one glyph)."""
    slack = font.getlength("，")
    return all(font.getlength(line) <= max_width + slack for line in lines)
