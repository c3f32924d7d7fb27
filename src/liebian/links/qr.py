"""QR codes for links and live codes: segno encodes, Pillow draws and places the logo.

PNG output is exactly ``size`` pixels square. Modules are drawn at an integer number of pixels
each and the rest of the canvas is filled with the light colour around the code (a wider quiet
zone), so every module edge stays sharp; scaling by a fractional factor would make some modules a
pixel wider than others, which hurts cheap phone scanners.

With a logo the error correction is "H" (about 30% of the code words recoverable) and the logo,
with a light pad behind it, covers at most ~20% of the code's width (about 4% of its area),
aligned to whole modules. Without a logo segno picks the highest error correction level that
fits in the smallest version for the data ("M" at least).

SVG output uses segno's serializer with a ``viewBox`` in module units and ``width``/``height`` of
``size``; a logo is embedded as a base64 PNG ``<image>`` over a light ``<rect>``.

Scans are told apart from clicks by the ``qr=1`` query parameter that :func:`qr_target` adds:
the redirect counts a request carrying it as a scan.
"""

from __future__ import annotations

import base64
import io
import re
from typing import Final, Literal
from urllib.parse import urlsplit, urlunsplit

import segno
from PIL import Image, UnidentifiedImageError

from liebian.kit.errors import Invalid

MIN_SIZE: Final = 64
MAX_SIZE: Final = 2048
MAX_BORDER: Final = 16
MAX_LOGO_BYTES: Final = 1024 * 1024
# A small compressed file can still decode to a huge bitmap; refuse before decoding it.
MAX_LOGO_PIXELS: Final = 4096 * 4096
LOGO_FORMATS: Final = ("PNG", "JPEG", "WEBP", "GIF", "BMP")
# Width of the logo's light pad as a share of the code's width (quiet zone excluded).
LOGO_SHARE: Final = 0.2
# Below WCAG's 3:1 for graphics, phone scanners start to miss codes.
MIN_CONTRAST: Final = 3.0

_HEX_COLOR = re.compile(r"#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})")
_SCAN_PARAM: Final = "qr"

RGB = tuple[int, int, int]


def _parse_color(name: str, value: str) -> RGB:
    if not isinstance(value, str) or _HEX_COLOR.fullmatch(value) is None:
        raise Invalid(
            f"{name} must be a hex colour like #000000 or #000",
            code="invalid_color",
            details={"field": name, "value": str(value)[:32]},
        )
    digits = value[1:]
    if len(digits) == 3:
        digits = "".join(c * 2 for c in digits)
    return (int(digits[0:2], 16), int(digits[2:4], 16), int(digits[4:6], 16))


def _luminance(rgb: RGB) -> float:
    def channel(c: int) -> float:
        s = c / 255
        return s / 12.92 if s <= 0.03928 else ((s + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(c) for c in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def _check_contrast(dark: RGB, light: RGB) -> None:
    dark_l, light_l = _luminance(dark), _luminance(light)
    ratio = (max(dark_l, light_l) + 0.05) / (min(dark_l, light_l) + 0.05)
    if dark_l >= light_l or ratio < MIN_CONTRAST:
        raise Invalid(
            "the dark colour must be clearly darker than the light colour "
            f"(contrast {ratio:.1f}:1, at least {MIN_CONTRAST:.0f}:1 needed) or phones cannot "
            "scan the code",
            code="invalid_color",
            details={"field": "dark", "contrast": round(ratio, 2)},
        )


def _load_logo(logo: bytes) -> Image.Image:
    if len(logo) > MAX_LOGO_BYTES:
        raise Invalid(
            "the logo must be at most 1 MB",
            code="invalid_logo",
            details={"field": "logo", "bytes": len(logo), "max_bytes": MAX_LOGO_BYTES},
        )
    try:
        image = Image.open(io.BytesIO(logo), formats=LOGO_FORMATS)
        if image.width * image.height > MAX_LOGO_PIXELS:
            raise Invalid(
                "the logo is too large in pixels; use an image of at most 4096×4096",
                code="invalid_logo",
                details={"field": "logo", "width": image.width, "height": image.height},
            )
        image.load()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        raise Invalid(
            "the logo is not a readable PNG, JPEG, WebP, GIF or BMP image",
            code="invalid_logo",
            details={"field": "logo"},
        ) from None
    return image.convert("RGBA")


def _make_code(data: str, with_logo: bool) -> segno.QRCode:
    if not isinstance(data, str) or not data:
        raise Invalid("data must be a non-empty string", code="invalid_qr_data")
    try:
        if with_logo:
            return segno.make_qr(data, error="h", boost_error=False)
        return segno.make_qr(data, error="m", boost_error=True)
    except segno.DataOverflowError:
        raise Invalid(
            "data is too long for a QR code; use the short link",
            code="invalid_qr_data",
            details={"length": len(data)},
        ) from None


def _logo_box(modules: int) -> int:
    """Side of the logo pad in modules: ≤ LOGO_SHARE of the width, odd so it centres on the grid."""
    side = int(modules * LOGO_SHARE)
    if side % 2 != modules % 2:
        side -= 1
    return max(side, 1)


def render_qr(
    data: str,
    *,
    fmt: Literal["png", "svg"],
    size: int = 512,
    logo: bytes | None = None,
    dark: str = "#000000",
    light: str = "#ffffff",
    border: int = 2,
) -> bytes:
    """Render ``data`` as a QR code and return the PNG or SVG file's bytes.

    Raises :class:`~liebian.kit.errors.Invalid` for an unknown format, a size outside 64–2048,
    a border outside 0–16, colours that are not hex or lack contrast, a logo that is not a
    decodable image of at most 1 MB, or data that does not fit in a QR code at this size.
    """
    if fmt not in ("png", "svg"):
        raise Invalid(
            "fmt must be png or svg", code="invalid_qr_format", details={"fmt": str(fmt)[:16]}
        )
    if isinstance(size, bool) or not isinstance(size, int) or not MIN_SIZE <= size <= MAX_SIZE:
        raise Invalid(
            f"size must be a whole number of pixels between {MIN_SIZE} and {MAX_SIZE}",
            code="invalid_qr_size",
            details={"size": str(size)[:16]},
        )
    if isinstance(border, bool) or not isinstance(border, int) or not 0 <= border <= MAX_BORDER:
        raise Invalid(
            f"border must be between 0 and {MAX_BORDER} modules",
            code="invalid_qr_border",
            details={"border": str(border)[:16]},
        )
    dark_rgb = _parse_color("dark", dark)
    light_rgb = _parse_color("light", light)
    _check_contrast(dark_rgb, light_rgb)
    logo_image = _load_logo(logo) if logo is not None else None

    code = _make_code(data, with_logo=logo_image is not None)
    width_modules = int(code.symbol_size(scale=1, border=border)[0])
    scale = size // width_modules
    if scale < 1:
        raise Invalid(
            f"the code needs {width_modules} modules across, more than {size} px can show; "
            "use a larger size or shorter data",
            code="invalid_qr_size",
            details={"size": size, "modules": width_modules},
        )
    if fmt == "png":
        return _render_png(code, size, scale, border, dark_rgb, light_rgb, logo_image)
    return _render_svg(code, size, border, dark, light, logo_image)


def _render_png(
    code: segno.QRCode,
    size: int,
    scale: int,
    border: int,
    dark: RGB,
    light: RGB,
    logo: Image.Image | None,
) -> bytes:
    rows = list(code.matrix_iter(scale=1, border=border))
    modules = len(rows)
    # Palette image: index 0 = light, 1 = dark; one byte per module, scaled by an integer.
    raster = Image.frombytes(
        "P", (modules, modules), b"".join(bytes(1 if bit else 0 for bit in row) for row in rows)
    )
    raster.putpalette([*light, *dark])
    raster = raster.resize((modules * scale, modules * scale), Image.Resampling.NEAREST)
    canvas = Image.new("P", (size, size), 0)
    canvas.putpalette([*light, *dark])
    offset = (size - modules * scale) // 2
    canvas.paste(raster, (offset, offset))

    out: Image.Image = canvas
    if logo is not None:
        out = canvas.convert("RGB")
        symbol = modules - 2 * border
        box = _logo_box(symbol)
        box_px = box * scale
        box_origin = offset + (border + (symbol - box) // 2) * scale
        out.paste(light, (box_origin, box_origin, box_origin + box_px, box_origin + box_px))
        inner = _fit_logo(logo, box_px)
        lx = box_origin + (box_px - inner.width) // 2
        ly = box_origin + (box_px - inner.height) // 2
        backdrop = Image.new("RGBA", inner.size, (*light, 255))
        out.paste(Image.alpha_composite(backdrop, inner).convert("RGB"), (lx, ly))
    buffer = io.BytesIO()
    out.save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


def _fit_logo(logo: Image.Image, box: int) -> Image.Image:
    """The logo scaled to fit inside the pad with a margin of ~10% on each side."""
    room = max(1, round(box * 0.8))
    ratio = min(room / logo.width, room / logo.height)
    target = (max(1, round(logo.width * ratio)), max(1, round(logo.height * ratio)))
    return logo.resize(target, Image.Resampling.LANCZOS)


def _render_svg(
    code: segno.QRCode,
    size: int,
    border: int,
    dark: str,
    light: str,
    logo: Image.Image | None,
) -> bytes:
    buffer = io.BytesIO()
    code.save(
        buffer,
        kind="svg",
        scale=1,
        border=border,
        dark=dark,
        light=light,
        xmldecl=False,
        omitsize=True,
        nl=False,
    )
    svg = buffer.getvalue().decode("ascii")
    svg = svg.replace("<svg ", f'<svg width="{size}" height="{size}" ', 1)
    if logo is None:
        return svg.encode("ascii")

    modules = int(code.symbol_size(scale=1, border=border)[0])
    symbol = modules - 2 * border
    box = _logo_box(symbol)
    origin = border + (symbol - box) // 2
    # Rasterize the logo at the pixel size it would have in a PNG of the same size; SVG viewers
    # scale it with the rest of the drawing.
    px_per_module = max(1, size // modules)
    inner = _fit_logo(logo, box * px_per_module)
    png = io.BytesIO()
    inner.save(png, format="PNG")
    href = "data:image/png;base64," + base64.b64encode(png.getvalue()).decode("ascii")
    inner_w = inner.width / px_per_module
    inner_h = inner.height / px_per_module
    ix = origin + (box - inner_w) / 2
    iy = origin + (box - inner_h) / 2
    overlay = (
        f'<rect x="{origin}" y="{origin}" width="{box}" height="{box}" fill="{light}"/>'
        f'<image x="{ix:g}" y="{iy:g}" width="{inner_w:g}" height="{inner_h:g}" '
        f'preserveAspectRatio="xMidYMid meet" href="{href}" xlink:href="{href}"/>'
    )
    svg = svg.replace(
        'xmlns="http://www.w3.org/2000/svg"',
        'xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink"',
        1,
    )
    head, closing = svg.rsplit("</svg>", 1)
    return (head + overlay + "</svg>" + closing).encode("ascii")


def has_qr_flag(query_string: bytes) -> bool:
    """Whether a request's raw query carries the ``qr=1`` that :func:`qr_target` adds.

    On the redirect's hot path: the pairs are split only when the bytes are there at all.
    """
    if b"qr=" not in query_string:
        return False
    return any(pair == b"qr=1" for pair in query_string.split(b"&"))


def qr_target(short_url: str) -> str:
    """The URL to encode in a QR code: ``short_url`` with ``qr=1`` added to its query.

    An existing ``qr`` parameter is replaced, other parameters and the fragment are kept as
    they are (not re-encoded), so ``https://s.cn/a?utm_source=poster`` becomes
    ``https://s.cn/a?utm_source=poster&qr=1``.
    """
    parts = urlsplit(short_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise Invalid(
            "short_url must be an absolute http(s) URL",
            code="invalid_url",
            details={"short_url": short_url[:200]},
        )
    kept = [
        pair for pair in parts.query.split("&") if pair and pair.split("=", 1)[0] != _SCAN_PARAM
    ]
    kept.append(f"{_SCAN_PARAM}=1")
    path = parts.path or "/"
    return urlunsplit((parts.scheme, parts.netloc, path, "&".join(kept), parts.fragment))
