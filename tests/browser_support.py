"""Headless Chromium for page tests: Debian's /usr/bin/chromium driven by Python Playwright.

Playwright's own browser download cannot work here (no network), so tests use the system
browser. Without it they skip, unless LIEBIAN_REQUIRE_BROWSER=1 (CI) turns the skip into a
failure so a missing package cannot hide a broken page.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip
INSTALL_HINT = "apt-get install chromium fonts-noto-cjk"
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"


# A page walk through the console runs once, on SQLite: the pages and their scripts are the same
# on both databases, and every API they call is tested on both (decision 0036). The end-to-end
# walk of issue 12 (tests/web/test_campaign_console.py) still runs on both.
ON_SQLITE_ONLY = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


def require_browser() -> Any:
    """The ``playwright.sync_api`` module, or skip (fail when LIEBIAN_REQUIRE_BROWSER=1)."""
    required = os.environ.get("LIEBIAN_REQUIRE_BROWSER") == "1"
    problem = None
    if not CHROMIUM.exists():
        problem = INSTALL_HINT
    else:
        try:
            import playwright.sync_api as sync_api
        except ImportError:
            problem = "pip install playwright (the Python package; the browser is Debian's)"
    if problem is not None:
        if required:
            pytest.fail(f"LIEBIAN_REQUIRE_BROWSER=1 but no browser: {problem}")
        pytest.skip(problem)
    return sync_api


@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    """A launched headless browser (closed on exit)."""
    sync_api = require_browser()
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def expect(target: Any, message: str | None = None) -> Any:
    """Playwright's auto-retrying assertions. Tests wait with these, never with
    ``page.wait_for_function``: that evaluates its predicate as a string, which the console's
    CSP (no 'unsafe-eval') refuses whenever the predicate is polled more than once."""
    return require_browser().expect(target, message)


def screenshot(page: Any, name: str) -> Path:
    """Full-page PNG in artifacts/ (gitignored) for a person to look at."""
    ARTIFACTS.mkdir(exist_ok=True)
    # From the top: a sticky header would otherwise be painted mid-page in a full-page shot.
    page.evaluate("() => window.scrollTo(0, 0)")
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


@contextlib.contextmanager
def live_server(app: Any) -> Iterator[str]:
    """Serve ``app`` under uvicorn on a free loopback port in a thread: real HTTP and real
    concurrency (sync handlers run in uvicorn's thread pool) for browser and load tests."""
    import socket
    import threading
    import time

    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    # A browser may keep a connection open at the end: after 5 s uvicorn closes it and runs the
    # app's shutdown anyway, so its background threads stop before the test's database goes.
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", lifespan="on",
        timeout_graceful_shutdown=5,
    )  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("live server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=60)
        if thread.is_alive():
            raise RuntimeError("live server did not stop within 60 s (its app's shutdown hangs)")
