"""Fixtures the fission tests share."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from browser_support import live_server


@pytest.fixture
def server(settings: Any, runtime: Any) -> Iterator[str]:
    """The whole app on a real loopback HTTP server (threads and pages need one)."""
    from liebian.app.factory import create_app

    with live_server(create_app(settings, runtime)) as url:
        yield url
