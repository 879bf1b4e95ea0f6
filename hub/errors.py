"""The hub's one error hierarchy; hub.server maps it to RFC 9457 problem+json once."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar


@dataclass(frozen=True, slots=True)
class FieldProblem:
    """One thing wrong with a request: where (field, optional row) and what to fix."""

    field: str
    message: str
    row: int | None = None

    def as_dict(self) -> dict[str, Any]:
        item: dict[str, Any] = {"field": self.field, "message": self.message}
        if self.row is not None:
            item["row"] = self.row
        return item


class HubError(Exception):
    status: ClassVar[int] = 500
    slug: ClassVar[str] = "internal-error"
    title: ClassVar[str] = "Internal error"
    retryable: ClassVar[bool] = False

    def __init__(self, detail: str, errors: Sequence[FieldProblem] = ()) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = list(errors)


class BadRequest(HubError):
    status = 400
    slug = "bad-request"
    title = "Bad request"


class ValidationFailed(HubError):
    status = 422
    slug = "validation-failed"
    title = "Validation failed"


class NotAuthenticated(HubError):
    status = 401
    slug = "not-authenticated"
    title = "Authentication required"


class Forbidden(HubError):
    status = 403
    slug = "forbidden"
    title = "Forbidden"


class NotFound(HubError):
    status = 404
    slug = "not-found"
    title = "Not found"


class Conflict(HubError):
    status = 409
    slug = "conflict"
    title = "Conflict"


class PayloadTooLarge(HubError):
    status = 413
    slug = "payload-too-large"
    title = "Payload too large"


class TooManyRequests(HubError):
    status = 429
    slug = "too-many-requests"
    title = "Too many requests"


class Unavailable(HubError):
    status = 503
    slug = "unavailable"
    title = "Service unavailable"
    retryable = True


def is_retryable(exc: BaseException) -> bool:
    """The hub's one retryable/terminal distinction.

    An error is terminal when it says `retryable = False`: every HubError says so through
    its class, and the driver and broker errors that cannot import the hub (drivers never
    do) carry the same attribute. Anything else (a dropped connection, an OSError) is worth
    another try.
    """
    return getattr(exc, "retryable", True) is not False
