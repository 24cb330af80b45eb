"""The InfraBoxError tree (drawn in the package docstring); each class says when it is raised."""

from __future__ import annotations

from typing import Any

__all__ = [
    "Forbidden",
    "InfraBoxError",
    "InfraBoxUnreachable",
    "NotFound",
    "NotPossibleNow",
    "OutcomeUnknown",
    "RateLimited",
    "TokenRejected",
    "UpstreamBroken",
]


class InfraBoxError(Exception):
    """The base of every error below: a call to InfraBox that did not succeed (never raised itself)."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        reason: str | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.request_id = request_id


class InfraBoxUnreachable(InfraBoxError):
    """Nothing reached InfraBox (connection refused, connect or pool timeout), even after retrying."""


class OutcomeUnknown(InfraBoxError):
    """A write was sent but no usable answer came back: it may or may not have taken effect."""


class TokenRejected(InfraBoxError):
    """401: the token is invalid, unknown, expired or revoked."""


class Forbidden(InfraBoxError):
    """403: the project is not enabled for this token, or the token has no trigger permission."""

    def __init__(self, message: str, *, kind: str, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.kind = kind


class NotFound(InfraBoxError):
    """404: the project, build or job does not exist, or not in that project."""


class NotPossibleNow(InfraBoxError):
    """400/409/422: InfraBox refuses the operation in the current state."""


class RateLimited(InfraBoxError):
    """429: InfraBox's own rate limit."""

    def __init__(self, message: str, *, retry_after_s: int, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after_s = retry_after_s


class UpstreamBroken(InfraBoxError):
    """An answer that fits no row of the contract, or a read with no usable answer."""

    def __init__(self, message: str, *, retry_after_s: int | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after_s = retry_after_s
