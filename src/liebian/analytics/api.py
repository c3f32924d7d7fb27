"""HTTP for analytics: every query is a POST of its request model, answered as JSON or, with
``?format=csv|parquet``, as a file. Spend records live here too (the cost side of CAC)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypeVar

from fastapi import APIRouter, Query, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from liebian import analytics
from liebian.analytics import spend
from liebian.analytics.admission import admission_for
from liebian.analytics.schemas import (
    AbQuery,
    AbResult,
    AttributionQuery,
    AttributionResult,
    CacQuery,
    CacResult,
    CountsQuery,
    CountsResult,
    FunnelQuery,
    FunnelResult,
    LtvQuery,
    LtvResult,
    MetricsQuery,
    MetricsResult,
    NewReturningQuery,
    NewReturningResult,
    RetentionQuery,
    RetentionResult,
    _Range,
)
from liebian.app.deps import PrincipalDep, RuntimeDep, SessionDep
from liebian.app.runtime import Runtime
from liebian.events.store.base import EventStore
from liebian.events.store.duckdb_budget import DuckDBBudget
from liebian.kit.auth import Principal, Role
from liebian.workspaces.repository import get_workspace

router = APIRouter(prefix="/analytics", tags=["analytics"])
spend_router = APIRouter(tags=["analytics"])

Q = TypeVar("Q", bound=BaseModel)
ExportFormat = Literal["json", "csv", "parquet"]
_MEDIA = {"csv": "text/csv; charset=utf-8", "parquet": "application/vnd.apache.parquet"}


def _with_workspace_tz(query: Q, runtime: Runtime, workspace_id: str) -> Q:
    """Bucket in the workspace's own zone unless the request named one (reads the database:
    call from a worker thread)."""
    if "tz" in type(query).model_fields and "tz" not in query.model_fields_set:
        with runtime.read_sessions() as session:
            workspace = get_workspace(session, workspace_id)
        if workspace is not None:
            return query.model_copy(update={"tz": workspace.timezone})
    return query


async def _run(
    fn: Callable[[EventStore, str, Any], BaseModel],
    query: BaseModel,
    principal: Principal,
    runtime: Runtime,
    fmt: ExportFormat,
    name: str,
) -> Any:
    principal.require(Role.analyst)
    store = runtime.event_store
    assert store is not None
    budget: DuckDBBudget | None = runtime.extras.get("duckdb_budget")

    def answer() -> BaseModel:
        # In a worker thread, all of it: the workspace's zone is an OLTP read.
        zoned = _with_workspace_tz(query, runtime, principal.workspace_id)
        # The embedded DuckDB of a serving process gets its cores and a larger pool for the
        # length of the query (otherwise a 10M-event funnel spills to disk).
        with budget.analytics() if budget is not None else contextlib.nullcontext():
            return fn(store, principal.workspace_id, zoned)

    async with admission_for(runtime.extras, runtime.settings).slot(principal.workspace_id):
        result = await run_in_threadpool(answer)
    if fmt == "json":
        return result
    content = await run_in_threadpool(_export_bytes, result, fmt)
    return Response(
        content,
        media_type=_MEDIA[fmt],
        headers={"content-disposition": f'attachment; filename="{name}.{fmt}"'},
    )


def _export_bytes(result: BaseModel, fmt: Literal["csv", "parquet"]) -> bytes:
    """The export as bytes, its staging file already gone. Not a FileResponse with a
    delete-after background task: under granian (ASGI pathsend) the server opens the file
    only after the app has returned, when the task may already have deleted it — the
    "404 Cannot open file" one export in six."""
    fd, staging = tempfile.mkstemp(suffix=f".{fmt}", prefix="liebian-export-")
    os.close(fd)
    path = Path(staging)
    try:
        analytics.export(result, path, fmt)
        return path.read_bytes()
    finally:
        path.unlink(missing_ok=True)


# ?format=csv|parquet answers the same result as a file.
EXPORT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {
            "text/csv": {"schema": {"type": "string"}},
            "application/vnd.apache.parquet": {"schema": {"type": "string", "format": "binary"}},
        }
    }
}
FormatParam = Query("json", alias="format", description="json, or csv / parquet to download")


@router.post("/funnel", response_model=FunnelResult, responses=EXPORT_RESPONSES)
async def funnel(
    body: FunnelQuery, principal: PrincipalDep, runtime: RuntimeDep, fmt: ExportFormat = FormatParam
) -> Any:
    """Ordered steps within a window (ClickHouse windowFunnel semantics)."""
    return await _run(analytics.funnel, body, principal, runtime, fmt, "funnel")


@router.post("/retention", response_model=RetentionResult, responses=EXPORT_RESPONSES)
async def retention(
    body: RetentionQuery,
    principal: PrincipalDep,
    runtime: RuntimeDep,
    fmt: ExportFormat = FormatParam,
) -> Any:
    return await _run(analytics.retention, body, principal, runtime, fmt, "retention")


@router.post("/counts", response_model=CountsResult, responses=EXPORT_RESPONSES)
async def counts(
    body: CountsQuery, principal: PrincipalDep, runtime: RuntimeDep, fmt: ExportFormat = FormatParam
) -> Any:
    """Events and unique users per time bucket, optionally broken down."""
    return await _run(analytics.counts, body, principal, runtime, fmt, "counts")


@router.post("/new-vs-returning", response_model=NewReturningResult, responses=EXPORT_RESPONSES)
async def new_vs_returning(
    body: NewReturningQuery,
    principal: PrincipalDep,
    runtime: RuntimeDep,
    fmt: ExportFormat = FormatParam,
) -> Any:
    """新老用户 per bucket."""
    return await _run(analytics.new_vs_returning, body, principal, runtime, fmt, "new_vs_returning")


@router.post("/attribution", response_model=AttributionResult, responses=EXPORT_RESPONSES)
async def attribution(
    body: AttributionQuery,
    principal: PrincipalDep,
    runtime: RuntimeDep,
    fmt: ExportFormat = FormatParam,
) -> Any:
    """Conversions and revenue credited to channel/link/campaign: first, last touch or linear."""
    return await _run(analytics.attribution, body, principal, runtime, fmt, "attribution")


@router.post("/ltv", response_model=LtvResult, responses=EXPORT_RESPONSES)
async def ltv(
    body: LtvQuery, principal: PrincipalDep, runtime: RuntimeDep, fmt: ExportFormat = FormatParam
) -> Any:
    return await _run(analytics.ltv, body, principal, runtime, fmt, "ltv")


class CacRequest(_Range):
    revenue_event: str = "purchase"
    currency: str = Field(default="CNY", pattern=r"^[A-Z]{3}$")


@router.post("/cac", response_model=CacResult, responses=EXPORT_RESPONSES)
async def cac(
    body: CacRequest,
    principal: PrincipalDep,
    runtime: RuntimeDep,
    fmt: ExportFormat = FormatParam,
) -> Any:
    """CAC and ROI per channel, from spend recorded with POST /api/v1/spend."""
    principal.require(Role.analyst)
    query = await run_in_threadpool(_cac_query, body, principal, runtime)
    return await _run(analytics.cac, query, principal, runtime, fmt, "cac")


def _cac_query(body: CacRequest, principal: Principal, runtime: Runtime) -> CacQuery:
    """The spend of the range, read in the caller's worker thread without the writer lock."""
    with runtime.read_sessions() as session:
        workspace = get_workspace(session, principal.workspace_id)
        tz = workspace.timezone if workspace else "Asia/Shanghai"
        rows = spend.spend_in_range(
            session, principal.workspace_id, body.from_, body.to, tz, body.currency
        )
    return CacQuery.model_validate(
        {
            "from": body.from_,
            "to": body.to,
            "revenue_event": body.revenue_event,
            "spend": [r.model_dump() for r in rows],
        }
    )


@router.post("/ab", response_model=AbResult, responses=EXPORT_RESPONSES)
async def ab(
    body: AbQuery, principal: PrincipalDep, runtime: RuntimeDep, fmt: ExportFormat = FormatParam
) -> Any:
    """Conversion per arm with a two-proportion test; warns on small or early samples."""
    return await _run(analytics.ab_readout, body, principal, runtime, fmt, "ab")


@router.post("/metrics", response_model=MetricsResult, responses=EXPORT_RESPONSES)
async def metrics(
    body: MetricsQuery,
    principal: PrincipalDep,
    runtime: RuntimeDep,
    fmt: ExportFormat = FormatParam,
) -> Any:
    """入群转化率, 次日/7日留存, 邀请率, 分享率, 转化率, 客单价, ARPU, GMV (docs/metrics.md)."""
    return await _run(analytics.metrics, body, principal, runtime, fmt, "metrics")


@spend_router.post("/spend", response_model=spend.SpendOut, status_code=201)
def record_spend(
    body: spend.SpendIn, principal: PrincipalDep, session: SessionDep
) -> spend.SpendOut:
    return spend.SpendOut.model_validate(spend.record(session, principal, body))


@spend_router.get("/spend", response_model=list[spend.SpendOut])
def list_spend(principal: PrincipalDep, session: SessionDep) -> list[spend.SpendOut]:
    principal.require(Role.analyst)
    return [
        spend.SpendOut.model_validate(r) for r in spend.list_spend(session, principal.workspace_id)
    ]


@spend_router.delete("/spend/{spend_id}", status_code=204)
def delete_spend(spend_id: str, principal: PrincipalDep, session: SessionDep) -> Response:
    spend.delete(session, principal, spend_id)
    return Response(status_code=204)
