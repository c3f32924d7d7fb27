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

    def headers(self) -> dict[str, str]:
        """Response headers that go with this error (``Retry-After`` for 429 and 503)."""
        return {}


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


class _RetryLater(DomainError):
    def __init__(self, message: str, *, retry_after: int = 1, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = max(1, int(retry_after))

    def headers(self) -> dict[str, str]:
        return {"retry-after": str(self.retry_after)}


class RateLimited(_RetryLater):
    status = 429
    code = "rate_limited"


class Unavailable(_RetryLater):
    """A fault of ours that passes (disk full, database unreachable): nothing was stored, the
    client should retry after ``retry_after`` seconds."""

    status = 503
    code = "unavailable"
