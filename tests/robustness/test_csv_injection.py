"""CSV exports never hand a spreadsheet a formula (issue 9, item 11)."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest

from liebian.kit.csv_safe import neutralize, restore

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n")

EVIL = ['=HYPERLINK("http://x.cn","点我")', "+1+1", "-2+3", "@SUM(A1)", "\t=1", "\r=1"]


def _cells(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text.lstrip("\ufeff"))))


def _no_formula(rows: list[list[str]]) -> None:
    for row in rows:
        for cell in row:
            assert not cell.startswith(FORMULA_STARTS), (cell, row)


@pytest.mark.parametrize("value", EVIL)
def test_neutralize_quotes_formulas_and_restore_undoes_it(value: str) -> None:
    assert neutralize(value) == "'" + value
    assert restore(neutralize(value)) == value
    assert neutralize("普通标题") == "普通标题" and neutralize("") == ""
    assert restore("'plain") == "'plain"


def test_links_export_neutralizes_formulas_and_imports_back(
    client: Any, owner: dict[str, str]
) -> None:
    for i, title in enumerate(EVIL):
        resp = client.post(
            "/api/v1/links",
            json={"url": f"https://shop.example.cn/{i}", "title": title, "channel": "-wx"},
            headers=owner,
        )
        assert resp.status_code == 201, resp.text
    exported = client.get("/api/v1/links/export.csv", headers=owner)
    assert exported.status_code == 200
    rows = _cells(exported.text)
    _no_formula(rows)
    titles = {r[rows[0].index("title")] for r in rows[1:]}
    # Titles are stored stripped ("\t=1" is kept as "=1"), then quoted on the way out.
    assert titles == {"'" + t.strip() for t in EVIL}
    # The file imports back to the same titles (the quote is the exporter's, not the data's).
    header = rows[0]
    slug_at = header.index("slug")
    for row in rows[1:]:
        row[slug_at] = row[slug_at] + "-copy"
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    resp = client.post(
        "/api/v1/links/bulk/csv",
        content=buffer.getvalue().encode(),
        headers={**owner, "content-type": "text/csv"},
    )
    assert resp.status_code == 201, resp.text
    copies = [
        link
        for link in client.get("/api/v1/links?limit=100", headers=owner).json()["items"]
        if link["slug"].endswith("-copy")
    ]
    assert sorted(link["title"] for link in copies) == sorted(t.strip() for t in EVIL)
    assert {link["channel"] for link in copies} == {"-wx"}


def test_analytics_csv_export_neutralizes_formulas(
    client: Any, owner: dict[str, str], runtime: Any
) -> None:
    events = [
        {"event": "page_view", "user_id": f"u{i}", "ts": "2026-03-01T10:00:00+08:00",
         "channel": channel}
        for i, channel in enumerate(["=cmd|' /C calc'!A0", "+wx", "@x", "plain"])
    ]  # fmt: skip
    assert client.post("/api/v1/events", json=events, headers=owner).status_code == 202
    runtime.flush_events()
    body = {
        "from": "2026-03-01T00:00:00+08:00",
        "to": "2026-03-02T00:00:00+08:00",
        "breakdown": "channel",
    }
    resp = client.post("/api/v1/analytics/counts?format=csv", json=body, headers=owner)
    assert resp.status_code == 200, resp.text
    rows = _cells(resp.text)
    _no_formula(rows)
    values = {r[rows[0].index("value")] for r in rows[1:]}
    assert values == {"'=cmd|' /C calc'!A0", "'+wx", "'@x", "plain"}
