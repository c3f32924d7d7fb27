"""Export any analytics result to CSV or Parquet.

A result is flattened to rows (nested lists such as funnel steps or retention periods become
one row per item, with the parent's fields repeated). Parquet is written by DuckDB itself
from an NDJSON staging file, so no pyarrow is needed.
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Literal

import duckdb
from pydantic import BaseModel

from liebian.kit.csv_safe import neutralize


def flatten(result: BaseModel | dict[str, Any]) -> list[dict[str, Any]]:
    data = result.model_dump(mode="json") if isinstance(result, BaseModel) else result
    return _rows(data, {})


def _rows(data: dict[str, Any], parent: dict[str, Any]) -> list[dict[str, Any]]:
    scalars = {**parent}
    nested: list[tuple[str, list[Any]]] = []
    for key, value in data.items():
        if isinstance(value, list) and value and isinstance(value[0], dict):
            nested.append((key, value))
        elif isinstance(value, list):
            for i, v in enumerate(value):
                scalars[f"{key}_{i}"] = v
        elif isinstance(value, dict):
            for k, v in value.items():
                scalars[f"{key}.{k}"] = v
        elif value is not None or key not in scalars:
            scalars[key] = value
    if not nested:
        return [scalars]
    out: list[dict[str, Any]] = []
    for key, items in nested:
        for item in items:
            prefixed = {f"{key}.{k}" if k in scalars else k: v for k, v in item.items()}
            out.extend(_rows(prefixed, scalars))
    return out


def export(
    result: BaseModel | dict[str, Any], path: str | Path, fmt: Literal["csv", "parquet"]
) -> Path:
    rows = flatten(result)
    columns: list[str] = list(dict.fromkeys(k for r in rows for k in r))
    out = Path(path)
    if fmt == "csv":
        with out.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=columns)
            # Text only: a negative number (a difference, a z score) is data, not a formula.
            writer.writerow({c: neutralize(c) for c in columns})
            writer.writerows(
                {k: neutralize(v) if isinstance(v, str) else v for k, v in r.items()} for r in rows
            )
        return out
    fd, staging = tempfile.mkstemp(suffix=".ndjson")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            for r in rows:
                fh.write(json.dumps({c: r.get(c) for c in columns}, ensure_ascii=False) + "\n")
        con = duckdb.connect()
        try:
            con.execute(
                "COPY (SELECT * FROM read_json_auto($src, format='newline_delimited'))"
                " TO $dst (FORMAT parquet)",
                {"src": staging, "dst": str(out)},
            )
        finally:
            con.close()
    finally:
        os.unlink(staging)
    return out
