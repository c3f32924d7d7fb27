"""Domain errors: raised anywhere below the HTTP layer, rendered by one handler.

Every error carries a stable machine ``code``, an HTTP ``status`` and a message that tells the
caller what to fix. The body is ``{"error": {"code", "message", "details"}}``.
"""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    status: int = 400
    code: str = "bad_request"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        details: Any = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.details = details

    def to_body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


class Invalid(DomainError):
    status = 422
    code = "invalid"


class NotFound(DomainError):
    status = 404
    code = "not_found"


class Conflict(DomainError):
    status = 409
    code = "conflict"


class Forbidden(DomainError):
    status = 403
    code = "forbidden"


class Unauthorized(DomainError):
    status = 401
    code = "unauthorized"


class Gone(DomainError):
    status = 410
    code = "gone"


class TooLarge(DomainError):
    status = 413
    code = "too_large"
