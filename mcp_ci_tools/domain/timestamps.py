"""Time as the server handles it: an injectable clock, an injectable sleep, and RFC 3339 text."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

__all__ = ["Clock", "Sleep", "parse_timestamp", "rfc3339"]

Clock = Callable[[], float]
"""Seconds since the epoch, like `time.time`; tests pass a fake."""

Sleep = Callable[[float], Awaitable[None]]
"""Like `anyio.sleep`; tests pass a recorder."""


def rfc3339(timestamp: float, *, milliseconds: bool = False) -> str:
    """`timestamp` in UTC as RFC 3339 with a `Z`, to the second or to the millisecond."""
    text = datetime.fromtimestamp(timestamp, UTC).isoformat(
        timespec="milliseconds" if milliseconds else "seconds"
    )
    return text.replace("+00:00", "Z")


def parse_timestamp(value: str | None) -> datetime | None:
    """The time in an ISO 8601 / RFC 3339 string, or None when there is none or it does not parse."""
    if not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None
