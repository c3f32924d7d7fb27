"""redis-py for scale mode, imported on demand (the ``redis`` extra is optional)."""

from __future__ import annotations

from types import ModuleType
from typing import Any


def redis_asyncio() -> ModuleType:
    """``redis.asyncio``, or a RuntimeError that says how to install it."""
    try:
        import redis.asyncio
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise RuntimeError(
            "LIEBIAN_REDIS_URL is set but the redis client is not installed: "
            "pip install 'liebian[redis]'"
        ) from exc
    return redis.asyncio


def retries(attempts: int) -> Any:
    """A retry policy of ``attempts`` immediate retries (0: fail at once, so callers notice)."""
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return Retry(NoBackoff(), attempts)
