"""QR rendering: every code is decoded back with zxing-cpp, SVGs are rasterized from their XML."""

from __future__ import annotations

import base64
import io
import re
import xml.etree.ElementTree as ET
from typing import Any

import pytest
import segno
import zxingcpp
from PIL import Image

from browser_support import require_browser
from liebian.kit.errors import Invalid
from liebian.links.qr import MAX_LOGO_BYTES, has_qr_flag, qr_target, render_qr

SVG_NS = "{http://www.w3.org/2000/svg}"
XLINK_HREF = "{http://www.w3.org/1999/xlink}href"
URL = "https://s.liebian.cn/Ab3xK9?qr=1"
LONG_URL = "https://shop.example.com/landing/spring-sale?" + "&".join(
    f"utm_{k}=value-{k}-2024" for k in ("source", "medium", "campaign", "content", "term")
)


def _decode(image: Image.Image) -> list[str]:
    return [result.text for result in zxingcpp.read_barcodes(image)]


def _png(data: bytes) -> Image.Image:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def _logo_png(size: tuple[int, int] = (300, 200), mode: str = "RGB") -> bytes:
    image = Image.new(mode, size, (220, 30, 30, 255) if mode == "RGBA" else (220, 30, 30))
    if mode == "RGBA":
        # A transparent ring around an opaque core, like most logo files.
        for x in range(size[0]):
            for y in range(10):
                image.putpixel((x, y), (0, 0, 0, 0))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def _logo_jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (128, 128), (20, 120, 200)).save(out, format="JPEG")
    return out.getvalue()


# --- PNG ------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [64, 100, 128, 333, 512, 1024, 2048])
def test_png_decodes_at_every_size(size: int) -> None:
    image = _png(render_qr(URL, fmt="png", size=size))
    assert image.size == (size, size)
    assert _decode(image) == [URL]


@pytest.mark.parametrize("size", [128, 256, 512, 777, 2048])
@pytest.mark.parametrize("logo_kind", ["png", "rgba", "jpeg"])
def test_png_with_logo_decodes(size: int, logo_kind: str) -> None:
    logo = {"png": _logo_png(), "rgba": _logo_png(mode="RGBA"), "jpeg": _logo_jpeg()}[logo_kind]
    image = _png(render_qr(URL, fmt="png", size=size, logo=logo))
    assert image.size == (size, size)
    assert _decode(image) == [URL]


@pytest.mark.parametrize("logo", [None, "png"])
@pytest.mark.parametrize(
    "data", [LONG_URL, "扫码进群：春季训练营 3 群", "WIFI:T:WPA;S:liebian;P:x;;"]
)
def test_png_round_trips_long_and_non_ascii_data(data: str, logo: str | None) -> None:
    image = _png(render_qr(data, fmt="png", size=512, logo=_logo_png() if logo else None))
    assert _decode(image) == [data]


def test_png_modules_are_crisp_and_use_only_the_two_colours() -> None:
    image = _png(render_qr(URL, fmt="png", size=500, dark="#1a3d7c", light="#fffdf0"))
    colours = {colour for _, colour in image.convert("RGB").getcolors(maxcolors=16) or []}
    assert colours == {(0x1A, 0x3D, 0x7C), (0xFF, 0xFD, 0xF0)}
    assert _decode(image) == [URL]

    # Every module is a whole, equal number of pixels: sample the module centres and compare
    # with segno's own matrix for the same data.
    code = segno.make_qr(URL, error="m", boost_error=True)
    matrix = list(code.matrix_iter(scale=1, border=2))
    modules = len(matrix)
    scale = 500 // modules
    offset = (500 - modules * scale) // 2
    rgb = image.convert("RGB")
    for y, row in enumerate(matrix):
        for x, bit in enumerate(row):
            for dx, dy in ((0, 0), (scale - 1, scale - 1)):
                pixel = rgb.getpixel((offset + x * scale + dx, offset + y * scale + dy))
                assert (pixel == (0x1A, 0x3D, 0x7C)) == bool(bit)


def test_logo_stays_within_a_fifth_of_the_width() -> None:
    with_logo = _png(render_qr(URL, fmt="png", size=512, logo=_logo_png())).convert("RGB")
    # The red logo pixels must sit in a centred box no wider than ~20% of the image.
    red = [
        (x, y)
        for y in range(0, 512, 2)
        for x in range(0, 512, 2)
        if with_logo.getpixel((x, y)) == (220, 30, 30)
    ]
    assert red
    width = max(x for x, _ in red) - min(x for x, _ in red)
    height = max(y for _, y in red) - min(y for _, y in red)
    assert width <= 0.2 * 512 and height <= 0.2 * 512
    centre_x = (max(x for x, _ in red) + min(x for x, _ in red)) / 2
    assert abs(centre_x - 256) <= 4


@pytest.mark.parametrize("fmt", ["png", "svg"])
def test_logo_uses_error_correction_h(fmt: str) -> None:
    data = render_qr(URL, fmt="png" if fmt == "png" else "svg", size=512, logo=_logo_png())
    image = _png(data) if fmt == "png" else _rasterize_segno_svg(data, px_per_module=8)[0]
    (result,) = zxingcpp.read_barcodes(image)
    assert result.text == URL
    assert result.ec_level == "H"


# --- SVG ------------------------------------------------------------------------------------


def _rasterize_segno_svg(svg: bytes, px_per_module: int) -> tuple[Image.Image, ET.Element]:
    """Paint the SVG exactly as a viewer would, for the elements render_qr emits.

    segno draws dark modules as one stroked path (stroke width 1, lines at y + 0.5) made of
    M/m moves and h runs, over a background rect path; render_qr may add a light <rect> and a
    base64 PNG <image>. Anything else in the document fails the test.
    """
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG_NS}svg"
    min_x, min_y, vb_w, vb_h = (float(v) for v in root.attrib["viewBox"].split())
    assert (min_x, min_y) == (0, 0) and vb_w == vb_h and vb_w.is_integer()
    modules = int(vb_w)
    canvas = Image.new("RGB", (modules * px_per_module,) * 2, (255, 0, 255))

    def colour(value: str) -> tuple[int, int, int]:
        from PIL import ImageColor

        rgb = ImageColor.getrgb(value)
        return (rgb[0], rgb[1], rgb[2])

    for element in root:
        tag = element.tag.removeprefix(SVG_NS)
        if tag == "path" and "fill" in element.attrib:
            assert element.attrib["d"] == f"M0 0h{modules}v{modules}h-{modules}z"
            canvas.paste(colour(element.attrib["fill"]), (0, 0, *canvas.size))
        elif tag == "path":
            ink = colour(element.attrib["stroke"])
            x = y = 0.0
            for command, args in re.findall(r"([MmHh])([^MmHh]*)", element.attrib["d"]):
                numbers = [float(n) for n in args.replace(",", " ").split()]
                if command == "M":
                    x, y = numbers
                elif command == "m":
                    x, y = x + numbers[0], y + numbers[1]
                else:
                    end = numbers[0] if command == "H" else x + numbers[0]
                    top = int((y - 0.5) * px_per_module)
                    box = (
                        int(x * px_per_module),
                        top,
                        int(end * px_per_module),
                        top + px_per_module,
                    )
                    canvas.paste(ink, box)
                    x = end
        elif tag == "rect":
            left, top, side = (
                round(float(element.attrib[k]) * px_per_module) for k in ("x", "y", "width")
            )
            canvas.paste(colour(element.attrib["fill"]), (left, top, left + side, top + side))
        elif tag == "image":
            href = element.attrib["href"]
            assert element.attrib[XLINK_HREF] == href
            prefix = "data:image/png;base64,"
            assert href.startswith(prefix)
            encoded = Image.open(io.BytesIO(base64.b64decode(href[len(prefix) :])))
            x0, y0, w, h = (
                float(element.attrib[k]) * px_per_module for k in ("x", "y", "width", "height")
            )
            picture = encoded.convert("RGBA").resize((round(w), round(h)))
            canvas.paste(picture, (round(x0), round(y0)), picture)
        else:
            pytest.fail(f"unexpected SVG element {tag}")
    return canvas, root


@pytest.mark.parametrize("size", [64, 300, 512, 2048])
@pytest.mark.parametrize("border", [0, 2, 4])
def test_svg_has_the_segno_matrix_and_decodes(size: int, border: int) -> None:
    svg = render_qr(URL, fmt="svg", size=size, border=border, dark="#222222")
    code = segno.make_qr(URL, error="m", boost_error=True)
    modules = int(code.symbol_size(scale=1, border=border)[0])
    raster, root = _rasterize_segno_svg(svg, px_per_module=1)
    assert root.attrib["viewBox"] == f"0 0 {modules} {modules}"
    assert root.attrib["width"] == root.attrib["height"] == str(size)
    expected = [
        [(0x22, 0x22, 0x22) if bit else (255, 255, 255) for bit in row]
        for row in code.matrix_iter(scale=1, border=border)
    ]
    assert [[raster.getpixel((x, y)) for x in range(modules)] for y in range(modules)] == expected
    big = raster.resize((raster.width * 8,) * 2, Image.Resampling.NEAREST)
    canvas = Image.new("RGB", (big.width + 64,) * 2, "white")
    canvas.paste(big, (32, 32))
    assert _decode(canvas) == [URL]


@pytest.mark.parametrize("size", [128, 512, 1500])
def test_svg_with_logo_embeds_png_and_decodes(size: int) -> None:
    svg = render_qr(URL, fmt="svg", size=size, logo=_logo_png(mode="RGBA"))
    raster, root = _rasterize_segno_svg(svg, px_per_module=10)
    images = root.findall(f"{SVG_NS}image")
    assert len(images) == 1
    assert root.attrib["width"] == str(size)
    modules = int(root.attrib["viewBox"].split()[2])
    assert float(images[0].attrib["width"]) <= 0.2 * modules
    assert (220, 30, 30) in {colour for _, colour in raster.getcolors(maxcolors=4096) or []}
    assert _decode(raster) == [URL]


@pytest.mark.browser
def test_svg_with_logo_decodes_after_chromium_renders_it() -> None:
    playwright_api = require_browser()  # skips, or fails when LIEBIAN_REQUIRE_BROWSER=1
    svg = render_qr(URL, fmt="svg", size=400, logo=_logo_jpeg(), dark="#0b3d2e")
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        try:
            page = browser.new_page(viewport={"width": 480, "height": 480})
            page.set_content(
                '<body style="margin:40px;background:#fff">' + svg.decode("ascii") + "</body>"
            )
            shot = page.screenshot()
        finally:
            browser.close()
    assert _decode(Image.open(io.BytesIO(shot))) == [URL]


# --- validation -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"fmt": "jpg"}, "invalid_qr_format"),
        ({"size": 63}, "invalid_qr_size"),
        ({"size": 2049}, "invalid_qr_size"),
        ({"size": True}, "invalid_qr_size"),
        ({"size": 256.0}, "invalid_qr_size"),
        ({"border": -1}, "invalid_qr_border"),
        ({"border": 17}, "invalid_qr_border"),
        ({"dark": "black"}, "invalid_color"),
        ({"dark": "#12345"}, "invalid_color"),
        ({"light": "#ffffff; onload=x"}, "invalid_color"),
        ({"dark": "#ffffff", "light": "#000000"}, "invalid_color"),
        ({"dark": "#cccccc", "light": "#ffffff"}, "invalid_color"),
        ({"logo": b"not an image"}, "invalid_logo"),
        ({"logo": b""}, "invalid_logo"),
        ({"logo": b"<svg xmlns='http://www.w3.org/2000/svg'/>"}, "invalid_logo"),
        ({"logo": b"\x89PNG\r\n\x1a\n" + b"\0" * (MAX_LOGO_BYTES)}, "invalid_logo"),
    ],
)
def test_invalid_input_is_rejected(kwargs: dict[str, object], code: str) -> None:
    params: dict[str, object] = {"fmt": "png", **kwargs}
    with pytest.raises(Invalid) as caught:
        untyped: Any = render_qr  # the point is to pass what the signature forbids
        untyped(URL, **params)
    assert caught.value.code == code
    assert caught.value.status == 422


def test_logo_that_decodes_to_a_huge_bitmap_is_rejected_before_decoding() -> None:
    out = io.BytesIO()
    Image.new("1", (5000, 5000), 1).save(out, format="PNG")
    assert len(out.getvalue()) < MAX_LOGO_BYTES
    with pytest.raises(Invalid) as caught:
        render_qr(URL, fmt="png", logo=out.getvalue())
    assert caught.value.code == "invalid_logo"


def test_truncated_logo_is_rejected() -> None:
    with pytest.raises(Invalid):
        render_qr(URL, fmt="png", logo=_logo_png()[:200])


def test_data_too_long_for_a_qr_code() -> None:
    with pytest.raises(Invalid) as caught:
        render_qr("x" * 8000, fmt="png")
    assert caught.value.code == "invalid_qr_data"


def test_data_too_dense_for_the_size() -> None:
    with pytest.raises(Invalid) as caught:
        render_qr("x" * 1500, fmt="png", size=64)
    assert caught.value.code == "invalid_qr_size"


def test_empty_data() -> None:
    with pytest.raises(Invalid):
        render_qr("", fmt="svg")


def test_short_hex_colours_are_accepted() -> None:
    image = _png(render_qr(URL, fmt="png", size=256, dark="#036", light="#FFF"))
    assert _decode(image) == [URL]


# --- qr_target ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("short_url", "expected"),
    [
        ("https://s.cn/abc", "https://s.cn/abc?qr=1"),
        ("https://s.cn/abc?utm_source=poster", "https://s.cn/abc?utm_source=poster&qr=1"),
        ("https://s.cn/abc?qr=0&a=1", "https://s.cn/abc?a=1&qr=1"),
        ("https://s.cn/abc?qr=1", "https://s.cn/abc?qr=1"),
        ("https://s.cn/abc?", "https://s.cn/abc?qr=1"),
        ("https://s.cn/abc#top", "https://s.cn/abc?qr=1#top"),
        ("https://s.cn/abc?q=%E4%B8%AD&qrcode=2", "https://s.cn/abc?q=%E4%B8%AD&qrcode=2&qr=1"),
        ("http://s.cn", "http://s.cn/?qr=1"),
        ("https://s.cn:8443/x/y", "https://s.cn:8443/x/y?qr=1"),
    ],
)
def test_qr_target(short_url: str, expected: str) -> None:
    assert qr_target(short_url) == expected


@pytest.mark.parametrize(
    "short_url", ["", "s.cn/abc", "/abc", "javascript:alert(1)", "ftp://s.cn/a"]
)
def test_qr_target_rejects_non_http_urls(short_url: str) -> None:
    with pytest.raises(Invalid):
        qr_target(short_url)


@pytest.mark.parametrize(
    ("query", "flag"),
    [
        (b"qr=1", True),
        (b"utm_source=poster&qr=1", True),
        (b"qr=1&utm_source=poster", True),
        (b"", False),
        (b"qr=0", False),
        (b"qr=10", False),
        (b"xqr=1", False),
        (b"utm_content=qr=1x", False),
    ],
)
def test_has_qr_flag_reads_exactly_the_mark_qr_target_adds(query: bytes, flag: bool) -> None:
    assert has_qr_flag(query) is flag


def test_has_qr_flag_recognises_every_qr_target() -> None:
    for short in ("https://s.cn/a", "https://s.cn/a?utm_source=poster", "https://s.cn/a?qr=0"):
        assert has_qr_flag(qr_target(short).split("?", 1)[1].encode())
