"""The interactive API reference at ``/docs`` (Swagger UI), served from the package.

FastAPI's default page loads Swagger UI from a CDN, so it was blank on a server without
internet access (issue 10 §4). The files of the ``swagger-ui-dist`` npm package (version and
licence beside them in ``web/static/swagger-ui/``: LICENSE, NOTICE, the bundle's third-party
licences) are shipped in the package and served from ``/docs/static/``. The page is
FastAPI's own ``get_swagger_ui_html`` pointed at them, answered with a Content-Security-Policy
that allows scripts and styles from this origin only, plus the one inline script that starts
Swagger UI by its SHA-256 hash — no ``'unsafe-inline'``. The validator badge (an image from
the Swagger site) is off. ``/redoc`` is off: one reference is enough, and ReDoc's standalone
bundle needs inline styles.
"""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, Response

from liebian.kit.errors import NotFound

SWAGGER_UI = Path(__file__).resolve().parents[1] / "web" / "static" / "swagger-ui"
STATIC_PREFIX = "/docs/static"
# A fixed list: no path can reach other files.
ASSETS = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "favicon-32x32.png": "image/png",
    "LICENSE": "text/plain; charset=utf-8",
    "NOTICE": "text/plain; charset=utf-8",
    "swagger-ui-bundle.js.LICENSE.txt": "text/plain; charset=utf-8",
}
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.S)


def docs_page(title: str, openapi_url: str) -> tuple[bytes, str]:
    """The page and its Content-Security-Policy (the inline start-up script by its hash)."""
    html = bytes(
        get_swagger_ui_html(
            openapi_url=openapi_url,
            title=title,
            swagger_js_url=f"{STATIC_PREFIX}/swagger-ui-bundle.js",
            swagger_css_url=f"{STATIC_PREFIX}/swagger-ui.css",
            swagger_favicon_url=f"{STATIC_PREFIX}/favicon-32x32.png",
            oauth2_redirect_url=None,
            swagger_ui_parameters={"validatorUrl": None},
        ).body
    )
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(s.encode()).digest()).decode() + "'"
        for s in _INLINE_SCRIPT.findall(html.decode())
    )
    csp = (
        f"default-src 'none'; script-src 'self' {hashes}; style-src 'self'; "
        "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
    return html, csp


def install(api: FastAPI) -> None:
    """``/docs`` and its files (the app is built with ``docs_url=None, redoc_url=None``)."""
    body, csp = docs_page(f"{api.title} — 接口文档", api.openapi_url or "/openapi.json")
    headers = {
        "content-security-policy": csp,
        "x-content-type-options": "nosniff",
        "referrer-policy": "same-origin",
        "cache-control": "no-cache",
    }

    @api.get("/docs", include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        return HTMLResponse(body, headers=headers)

    @api.get(STATIC_PREFIX + "/{name}", include_in_schema=False)
    def swagger_ui_file(name: str) -> Response:
        if name not in ASSETS:
            raise NotFound("no such file of the API reference")
        return FileResponse(
            SWAGGER_UI / name,
            media_type=ASSETS[name],
            headers={"cache-control": "public, max-age=86400", "x-content-type-options": "nosniff"},
        )
