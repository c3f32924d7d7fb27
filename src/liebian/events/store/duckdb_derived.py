"""Tables derived from ``events`` in the DuckDB file (first touch, community events, campaign
counters): each is built once from the events, and again whenever the person keys were
recomputed under a new ``hash()`` (the probe, see duckdb_store), recorded in ``store_meta``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def ensure_built(con: Any, meta_key: str, probe: str, build: Callable[[], None]) -> None:
    """Run ``build`` and record ``probe`` under ``meta_key``, in one transaction, unless the
    table was already built under this probe."""
    row = con.execute("SELECT value FROM store_meta WHERE key = $k", {"k": meta_key}).fetchone()
    if row and row[0] == probe:
        return
    con.execute("BEGIN TRANSACTION")
    build()
    con.execute("INSERT OR REPLACE INTO store_meta VALUES ($k, $v)", {"k": meta_key, "v": probe})
    con.execute("COMMIT")
