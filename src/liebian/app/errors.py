"""One renderer for every error: ``{"error": {"code", "message", "details"}}``."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from liebian.kit.errors import DomainError
from liebian.kit.faults import error_answer, log_failure, request_id

log = logging.getLogger("liebian.errors")


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details}}


def _validation_details(exc: RequestValidationError) -> list[dict[str, Any]]:
    out = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ()) if p != "body"]
        out.append({"field": ".".join(loc), "problem": err.get("msg", ""), "type": err.get("type")})
    return out


def install_error_handlers(app: FastAPI) -> None:
    from liebian.app.deps import ParticipantPageLimited

    @app.exception_handler(ParticipantPageLimited)
    async def _page_limited(_: Request, exc: ParticipantPageLimited) -> HTMLResponse:
        return exc.page()  # a phone sees a Chinese page, not JSON

    @app.exception_handler(DomainError)
    async def _domain(_: Request, exc: DomainError) -> JSONResponse:
        return JSONResponse(exc.to_body(), status_code=exc.status, headers=exc.headers())

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        details = _validation_details(exc)
        fields = ", ".join(d["field"] or "body" for d in details[:5])
        return JSONResponse(
            error_body("invalid_request", f"the request is not valid; check: {fields}", details),
            status_code=422,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(
            exc.status_code, "http_error"
        )
        return JSONResponse(error_body(code, str(exc.detail)), status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Logged with a request id (also in the answer); 503 + Retry-After when transient —
        # the database busy or unreachable, a full disk (kit/faults.py).
        rid = request_id(request.scope)
        log_failure(exc, request.scope, rid)
        status, body, headers = error_answer(exc, rid)
        return JSONResponse(body, status_code=status, headers=headers)
