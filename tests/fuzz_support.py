"""Schemathesis over every operation of the OpenAPI document, through an in-process client.

Shared by the bounded fuzz in the suite (tests/robustness/test_openapi_fuzz.py) and the
bigger run by hand (bench/fuzz_api.py). Each operation gets its own Hypothesis run with a
fixed seed; a failing case does not stop the others, and each failure names the operation,
the check and a curl command that reproduces it.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import hypothesis
import schemathesis
from hypothesis import HealthCheck, Phase
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@dataclass
class OperationReport:
    label: str
    requests: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)


@dataclass
class FuzzReport:
    operations: list[OperationReport]
    seconds: float

    @property
    def requests(self) -> int:
        return sum(op.requests for op in self.operations)

    @property
    def failures(self) -> list[str]:
        return [f for op in self.operations for f in op.failures]

    def statuses(self) -> Counter[int]:
        total: Counter[int] = Counter()
        for op in self.operations:
            total.update(op.statuses)
        return total

    def summary(self) -> str:
        five = sum(n for s, n in self.statuses().items() if s >= 500)
        return (
            f"{len(self.operations)} operations, {self.requests} requests, {five} answered 5xx,"
            f" {len(self.failures)} failing cases, {self.seconds:.1f} s;"
            f" statuses {dict(sorted(self.statuses().items()))}"
        )


def fuzz(
    spec: dict[str, Any],
    send: Callable[[dict[str, Any]], Any],
    *,
    headers: dict[str, str],
    examples: int,
    seed: int = 20260901,
    only: Iterable[str] = (),
) -> FuzzReport:
    """Fuzz every operation in ``spec``. ``send`` takes the request's keyword arguments
    (method, url, headers, params, content/json…) and returns an httpx response."""
    schema = schemathesis.openapi.from_dict(spec)
    wanted = set(only)
    reports: list[OperationReport] = []
    started = time.perf_counter()
    for result in schema.get_all_operations():
        operation = result.ok()
        label = f"{operation.method.upper()} {operation.path}"
        if wanted and label not in wanted:
            continue
        report = OperationReport(label)
        reports.append(report)
        _fuzz_operation(operation, report, send, headers, examples, seed)
    return FuzzReport(reports, time.perf_counter() - started)


def _fuzz_operation(
    operation: Any,
    report: OperationReport,
    send: Callable[[dict[str, Any]], Any],
    headers: dict[str, str],
    examples: int,
    seed: int,
) -> None:
    @hypothesis.given(case=operation.as_strategy())
    @hypothesis.settings(
        max_examples=examples,
        database=None,
        deadline=None,
        derandomize=False,
        phases=[Phase.explicit, Phase.generate],  # no shrinking: report the case as found
        suppress_health_check=list(HealthCheck),
        verbosity=hypothesis.Verbosity.quiet,
    )
    @hypothesis.seed(seed)
    def run(case: Any) -> None:
        merged = {**(case.headers or {}), **headers}
        kwargs = case.as_transport_kwargs(base_url="http://sho.rt", headers=merged)
        request = {
            key: kwargs[key]
            for key in ("method", "url", "headers", "params", "json", "data", "cookies")
            if kwargs.get(key) is not None
        }
        if "data" in request:
            request["content"] = request.pop("data")
        if "cookies" in request and not request["cookies"]:
            del request["cookies"]
        try:
            response = send(request)
        except Exception as exc:  # the server raised through the client: a crash
            report.failures.append(
                f"{report.label}: the request raised {type(exc).__name__}: {exc}\n"
                f"  reproduce: {case.as_curl_command(headers=merged)}"
            )
            return
        report.requests += 1
        report.statuses[response.status_code] += 1
        try:
            case.validate_response(response, checks=CHECKS, headers=merged)
        except FailureGroup as exc:  # one entry per failed check, with a curl to reproduce
            report.failures.append(f"{report.label}: {str(exc).strip()}")

    # An operation whose inputs Hypothesis cannot satisfy is reported by its zero requests.
    with contextlib.suppress(hypothesis.errors.Unsatisfiable):
        run()
