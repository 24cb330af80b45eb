"""Audit records and the log that renders them: one JSON object per line for every tool call.

A trigger call writes two records: `attempt` (durable, before the request is sent) and `result`.
If a record cannot be written, `AuditUnavailable` is raised and trigger tools refuse (fail closed).
The token never appears here: records carry its fingerprint and its full SHA-256 only.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Literal, Protocol

import anyio
import anyio.to_thread

from mcp_ci_tools.domain.masking import describe_value, mask
from mcp_ci_tools.domain.timestamps import Clock, rfc3339

__all__ = [
    "AuditLog",
    "AuditRecord",
    "AuditSink",
    "AuditUnavailable",
    "Confirmation",
    "Decision",
    "Outcome",
    "RecordObserver",
    "SyncFunction",
    "TraceIdSource",
    "UnsafeAuditFile",
    "WriteFunction",
]

log = logging.getLogger("mcp_ci_tools.audit")

Decision = Literal["allowed", "denied"]
Outcome = Literal["success", "error", "unknown", "denied", "dry_run"]
# How a trigger call was confirmed by the user: not asked (no confirmation configured for the tool), asked
# and accepted ("elicited"), declined or cancelled, or the client cannot be asked ("unsupported").
Confirmation = Literal["not_required", "elicited", "declined", "cancelled", "unsupported"]
RecordObserver = Callable[["AuditRecord"], None]
TraceIdSource = Callable[[], "str | None"]
WriteFunction = Callable[[int, bytes], int]
SyncFunction = Callable[[int], None]


class AuditUnavailable(Exception):
    """The audit record could not be made durable."""


class AuditSink(Protocol):
    def write(self, line: str, *, durable: bool) -> None:
        """Append one line (a JSON object); raise `OSError` if it was not written (and, when `durable`,
        synced to disk). Sinks that chain their lines add `seq` and `prev` to it."""
        ...


class UnsafeAuditFile(OSError):
    """The audit path is not a file this server may trust (a symlink, not a regular file, another user's, or
    writable by others), or its tail cannot be repaired; nothing was written."""


@dataclass(frozen=True)
class AuditRecord:
    """What happened in one step of one tool call. `None` fields are left out of the line."""

    event: Literal["attempt", "result"]
    tool: str
    token: str  # the caller's token fingerprint, never the token
    # the token's full SHA-256 (the caller key): tells apart callers that share a fingerprint
    token_sha256: str
    request_id: str
    decision: Decision
    outcome: Outcome | None = None
    reason: str | None = None
    project_id: str | None = None
    build_id: str | None = None
    job_id: str | None = None
    http_status: int | None = None
    duration_ms: float | None = None
    confirmation: Confirmation | None = None
    detail: dict[str, Any] = field(default_factory=dict)


_FIELDS = tuple(f.name for f in fields(AuditRecord))
_ID_FIELDS = ("project_id", "build_id", "job_id")
_MAX_ID_CHARS = 64


def _shown_id(value: str) -> str:
    """An id as the caller gave it when short and secret-free, else a description (ids are audited before
    they are validated, and a caller may send anything)."""
    return value if len(value) <= _MAX_ID_CHARS and mask(value) == value else describe_value(value)


def _no_trace() -> str | None:
    return None


class AuditLog:
    """Writes `AuditRecord`s to a sink, each as one JSON line with a timestamp and the current trace id.

    `trace_id` gives the trace of the call being recorded (None without tracing); each `observers` entry
    sees every record written (metrics count calls from them), after the sink took it or refused it. An
    observer that raises is logged and does not affect the call.
    """

    def __init__(
        self,
        sink: AuditSink,
        *,
        clock: Clock = time.time,
        trace_id: TraceIdSource = _no_trace,
        observers: Sequence[RecordObserver] = (),
    ) -> None:
        self._sink = sink
        self._clock = clock
        self._trace_id = trace_id
        self._observers = tuple(observers)

    async def write(self, record: AuditRecord, *, durable: bool) -> None:
        """Write `record` off the event loop (the sink's file I/O and fsync run in a worker thread), so a slow
        disk stalls only the call whose record it is. Once begun, the write finishes even if the call is
        cancelled. Raises `AuditUnavailable` if the record was not written (durably, when `durable`)."""
        line = self.render(record)  # here, not in the thread: the trace id is the current call's
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(functools.partial(self._written, record, line, durable))

    def write_now(self, record: AuditRecord, *, durable: bool) -> None:
        """`write`, blocking the calling thread: for code that runs outside the event loop."""
        self._written(record, self.render(record), durable)

    def _written(self, record: AuditRecord, line: str, durable: bool) -> None:
        try:
            self._sink.write(line, durable=durable)
        except UnsafeAuditFile as error:
            raise AuditUnavailable(f"audit log refused: {error}") from error
        except OSError as error:
            raise AuditUnavailable(
                f"audit log not writable ({type(error).__name__}: {error.strerror or error})"
            ) from error
        finally:
            self._observe(record)

    def _observe(self, record: AuditRecord) -> None:
        for observer in self._observers:
            try:
                observer(record)
            except Exception:
                log.exception("audit record observer %r failed", observer)

    async def write_or_log(self, record: AuditRecord, *, durable: bool) -> None:
        """For records after a decision: a failure must not hide the outcome, so the line goes to stderr."""
        try:
            await self.write(record, durable=durable)
        except AuditUnavailable as error:
            log.error("audit record not written (%s); record follows: %s", error, self.render(record))

    def render(self, record: AuditRecord) -> str:
        values = {name: getattr(record, name) for name in _FIELDS}
        if not values["detail"]:
            del values["detail"]
        for name in _ID_FIELDS:
            if values[name] is not None:
                values[name] = _shown_id(values[name])
        line: dict[str, Any] = {
            "ts": rfc3339(self._clock(), milliseconds=True),
            "token": values.pop("token"),
        }
        line.update({key: value for key, value in values.items() if value is not None})
        trace_id = self._trace_id()
        if trace_id is not None:
            line["trace_id"] = trace_id
        return json.dumps(line, separators=(",", ":"), ensure_ascii=False)
