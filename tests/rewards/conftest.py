"""Fixtures of the rewards tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from browser_support import live_server


@pytest.fixture
def server(settings: Any, runtime: Any) -> Iterator[str]:
    """The whole app on a real loopback HTTP server, for tests with concurrent clients."""
    from liebian.app.factory import create_app

    with live_server(create_app(settings, runtime)) as url:
        yield url


@pytest.fixture
def http(server: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server, timeout=60) as client:
        yield client
