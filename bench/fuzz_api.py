"""Schemathesis over every operation of liebian's OpenAPI document, N examples each.

    PYTHONPATH=src python bench/fuzz_api.py --examples 50 [--seed 1] [--only "GET /api/v1/links"]

Runs the app in process on a fresh SQLite + DuckDB data directory with an owner key, and
prints per operation the requests sent and the statuses answered, then every failing case
(5xx, undocumented status or content type, body not matching its schema) with a curl command
that reproduces it. Exit status 1 when any case failed. The suite runs the same checks with a
few examples (tests/robustness/test_openapi_fuzz.py).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=50)
    parser.add_argument("--seed", type=int, default=20260901)
    parser.add_argument("--only", action="append", default=[])
    args = parser.parse_args()

    from fastapi.testclient import TestClient

    from fuzz_support import fuzz
    from liebian.app.factory import create_app
    from liebian.app.runtime import Runtime
    from liebian.kit.db import session_scope
    from liebian.kit.settings import Settings
    from liebian.migrations import upgrade
    from liebian.workspaces.service import bootstrap

    data = Path(tempfile.mkdtemp(prefix="liebian-fuzz-"))
    url = f"sqlite:///{data}/liebian.db"
    upgrade(url)
    settings = Settings(
        data_dir=data / "data", database_url=url, secret_key="22" * 32,
        base_url="http://sho.rt", jobs_interval=0, webhook_interval=0,
    )  # fmt: skip
    runtime = Runtime.build(settings)
    app = create_app(settings, runtime)
    with session_scope(runtime.sessions) as session:
        _workspace, key = bootstrap(session, "fuzz")
    headers = {"Authorization": f"Bearer {key}"}
    with TestClient(
        app, base_url="http://sho.rt", raise_server_exceptions=False, follow_redirects=False
    ) as client:
        report = fuzz(
            app.api.openapi(),
            lambda request: client.request(**request),
            headers=headers,
            examples=args.examples,
            seed=args.seed,
            only=args.only,
        )
    for op in report.operations:
        print(f"{op.label:80} {op.requests:5} {dict(sorted(op.statuses.items()))}")
    for failure in report.failures:
        print("\n----\n" + failure)
    load = os.getloadavg()
    print(f"\nexamples per operation {args.examples}, seed {args.seed}; load {load[0]:.2f}")
    print(report.summary())
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
