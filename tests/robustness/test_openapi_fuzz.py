"""A bounded Schemathesis run over every operation the OpenAPI document lists (issue 9,
item 14): no 5xx, every status code and content type documented, every JSON body as its
schema says. A few examples per operation with a fixed seed keep it to seconds; the bigger
run is bench/fuzz_api.py (docs/robustness.md).

When this fails, each line names the operation, the failed check and a curl command that
reproduces the case: fix the route (a 4xx for bad input, the status in ``responses=``, the
``response_model``), not this test.
"""

from __future__ import annotations

from typing import Any

import pytest

from fuzz_support import fuzz

EXAMPLES_PER_OPERATION = 3


# The contract is the HTTP layer's; one backend keeps the suite's time small.
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_every_operation_holds_to_its_openapi_document(client: Any, owner: dict[str, str]) -> None:
    from fastapi.testclient import TestClient

    spec = client.app.api.openapi()
    # Server exceptions become the 500 a real client would get (the app is already started).
    plain = TestClient(
        client.app, base_url="http://sho.rt", raise_server_exceptions=False, follow_redirects=False
    )
    report = fuzz(
        spec,
        lambda request: plain.request(**request),
        headers=owner,
        examples=EXAMPLES_PER_OPERATION,
    )
    operations = sum(len(item) for item in spec["paths"].values())
    assert len(report.operations) == operations, report.summary()
    assert report.requests >= operations, report.summary()
    assert not report.failures, (
        f"{len(report.failures)} fuzz cases broke the API contract ({report.summary()}):\n\n"
        + "\n\n".join(report.failures[:20])
    )
