"""The audit log: one JSON object per line for every tool call, refused ones included.

A trigger call writes two records: `attempt` (durable, before the request is sent) and `result`.
If a record cannot be written, `AuditUnavailable` is raised and trigger tools refuse (fail closed).
The token never appears here: records carry its fingerprint only.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, Protocol

from mcp_ci_tools.domain.masking import describe_value, mask
from mcp_ci_tools.domain.timestamps import Clock, rfc3339

__all__ = ["AuditLog", "AuditRecord", "AuditSink", "AuditUnavailable", "Decision", "JsonlFileSink", "Outcome"]

log = logging.getLogger("mcp_ci_tools.audit")

Decision = Literal["allowed", "denied"]
Outcome = Literal["success", "error", "unknown", "denied"]


class AuditUnavailable(Exception):
    """The audit record could not be made durable."""


class AuditSink(Protocol):
    def write(self, line: str, *, durable: bool) -> None:
        """Append one line; raise `OSError` if it was not written (and, when `durable`, synced to disk)."""
        ...


class JsonlFileSink:
    """Appends to a JSONL file, opened per record so log rotation is safe; one `write(2)` per line."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._directory_made = False

    def write(self, line: str, *, durable: bool) -> None:
        if not self._directory_made:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._directory_made = True
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            data = (line + "\n").encode()
            if os.write(fd, data) != len(data):
                raise OSError(f"short write to {self.path}")
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)


@dataclass(frozen=True)
class AuditRecord:
    """What happened in one step of one tool call. `None` fields are left out of the line."""

    event: Literal["attempt", "result"]
    tool: str
    token: str  # the caller's token fingerprint, never the token
    request_id: str
    decision: Decision
    outcome: Outcome | None = None
    reason: str | None = None
    project_id: str | None = None
    build_id: str | None = None
    job_id: str | None = None
    http_status: int | None = None
    duration_ms: float | None = None
    detail: dict[str, Any] = field(default_factory=dict)


_FIELDS = tuple(f.name for f in fields(AuditRecord))
_ID_FIELDS = ("project_id", "build_id", "job_id")
_MAX_ID_CHARS = 64


def _shown_id(value: str) -> str:
    """An id as the caller gave it when short and secret-free, else a description (ids are audited before
    they are validated, and a caller may send anything)."""
    return value if len(value) <= _MAX_ID_CHARS and mask(value) == value else describe_value(value)


class AuditLog:
    """Writes `AuditRecord`s to a sink, each as one JSON line with a timestamp."""

    def __init__(self, sink: AuditSink, *, clock: Clock = time.time) -> None:
        self._sink = sink
        self._clock = clock

    def write(self, record: AuditRecord, *, durable: bool) -> None:
        line = self.render(record)
        try:
            self._sink.write(line, durable=durable)
        except OSError as error:
            raise AuditUnavailable(
                f"audit log not writable ({type(error).__name__}: {error.strerror or error})"
            ) from error

    def write_or_log(self, record: AuditRecord, *, durable: bool) -> None:
        """For records after a decision: a failure must not hide the outcome, so the line goes to stderr."""
        try:
            self.write(record, durable=durable)
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
        return json.dumps(line, separators=(",", ":"), ensure_ascii=False)
