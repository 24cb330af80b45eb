"""Time as the server handles it: an injectable clock, an injectable sleep, and RFC 3339 text.

Every function here is total: no input makes it raise. Dates InfraBox sends are parsed by
`parse_timestamp` only; anything outside the years 1970to9998 (year 1, `+275760-09-13`, negative epochs,
NaN) counts as no date at all, so every duration computed from them is safe.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

__all__ = ["EARLIEST", "LATEST", "Clock", "Sleep", "epoch_seconds", "parse_timestamp", "rfc3339"]

Clock = Callable[[], float]
"""Seconds since the epoch, like `time.time`; tests pass a fake."""

Sleep = Callable[[float], Awaitable[None]]
"""Like `anyio.sleep`; tests pass a recorder."""

EARLIEST = 0.0
"""1970-01-01T00:00:00Z: no CI job started before it."""
LATEST = datetime(9999, 1, 1, tzinfo=UTC).timestamp()
"""9999-01-01T00:00:00Z: later dates are refused, so a time zone offset can never leave the calendar."""

_MAX_TEXT = 64  # the longest ISO 8601 form is about 40 characters


def rfc3339(timestamp: float, *, milliseconds: bool = False) -> str:
    """`timestamp` in UTC as RFC 3339 with a `Z`, to the second or to the millisecond.

    Outside 1970to9998 (or NaN) the nearest end of that range is shown.
    """
    clamped = EARLIEST if math.isnan(timestamp) else min(max(timestamp, EARLIEST), LATEST - 1)
    text = datetime.fromtimestamp(clamped, UTC).isoformat(
        timespec="milliseconds" if milliseconds else "seconds"
    )
    return text.replace("+00:00", "Z")


def parse_timestamp(value: object) -> datetime | None:
    """The time in an ISO 8601 / RFC 3339 string as an aware datetime, or None when there is none.

    A time without an offset is UTC. None also for anything that is not a string, does not parse, or lies
    outside 1970-01-01 to 9998-12-31 UTC; the result's `.timestamp()` therefore never raises.
    """
    if not isinstance(value, str) or not value or len(value) > _MAX_TEXT:
        return None
    try:
        parsed = datetime.fromisoformat(value)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        seconds = parsed.timestamp()  # aware: plain arithmetic, but an odd tzinfo could still raise
    except (ValueError, OverflowError, TypeError, OSError):
        return None
    return parsed if EARLIEST <= seconds < LATEST else None


def epoch_seconds(value: object) -> float | None:
    """`parse_timestamp(value)` as seconds since the epoch, or None."""
    parsed = parse_timestamp(value)
    return None if parsed is None else parsed.timestamp()
