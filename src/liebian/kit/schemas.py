"""Base Pydantic models: unknown fields are an error, so typos never pass silently."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

T = TypeVar("T")


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class OutModel(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = None


class ErrorBody(BaseModel):
    code: str = Field(description="stable machine code, e.g. not_found, invalid_request")
    message: str = Field(description="what went wrong and what to fix, for a person")
    details: Any = Field(default=None, description="per-field problems or other specifics")


class ErrorResponse(BaseModel):
    """Every error answer: ``{"error": {"code", "message", "details"}}``."""

    error: ErrorBody


# What each usual error status means for a caller of the JSON API.
_ERROR_MEANINGS: dict[int, str] = {
    400: "the request cannot be understood (malformed body or parameters)",
    401: "no valid API key: send 'Authorization: Bearer lb_…'",
    403: "the key's role may not do this",
    404: "no such resource in this workspace",
    409: "conflicts with the current state (taken slug, duplicate, wrong status)",
    410: "the resource is gone (expired or deleted)",
    413: "the body or batch is too large",
    422: "the input is not valid; details name each field and what to fix",
    429: "too many requests; retry after the Retry-After header",
    500: "a fault on the server, logged under the request_id in details",
    503: "temporarily unavailable (a query past its time limit, a full queue); retry later",
}
USUAL_ERRORS = (400, 401, 403, 404, 409, 413, 422, 429, 500, 503)


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route or router: each status with the shared error schema.

    With no argument, the usual set every authenticated JSON operation may answer."""
    # The schema by reference, not ``"model"``: FastAPI would build a validating field per
    # status per route (about 1,500 of them, most of an app's build time), although error
    # replies are never validated against it. install_error_schema() puts the schema in.
    return {
        status: {
            "description": _ERROR_MEANINGS.get(status, "error"),
            "content": {"application/json": {"schema": {"$ref": ERROR_SCHEMA_REF}}},
        }
        for status in (statuses or USUAL_ERRORS)
    }


ERROR_SCHEMA_REF = "#/components/schemas/ErrorResponse"


def error_component_schemas() -> dict[str, Any]:
    """ErrorResponse and the models it uses, as OpenAPI ``components.schemas`` entries."""
    schema = ErrorResponse.model_json_schema(ref_template="#/components/schemas/{model}")
    defs = schema.pop("$defs", {})
    return {**defs, "ErrorResponse": schema}
