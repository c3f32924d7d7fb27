"""CSV cells that spreadsheet programs will not run: a leading ``=``, ``+``, ``-``, ``@`` or
control character makes Excel/WPS evaluate the cell as a formula (CSV injection), so such
cells get a leading apostrophe, which the spreadsheet shows as text. Numbers are written by
the callers as plain digits. Used by the payouts, contacts, links and analytics exports."""

from __future__ import annotations

from typing import Any

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n")


def neutralize(value: Any) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def restore(value: str) -> str:
    """The text ``neutralize`` was given, from a cell read back from an exported file (the
    links export is meant to be edited and imported again)."""
    if value.startswith("'") and value[1:].startswith(_FORMULA_START):
        return value[1:]
    return value
