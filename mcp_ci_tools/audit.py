"""The audit log: one JSON object per line for every tool call, refused ones included.

A trigger call writes two records: `attempt` (durable, before the request is sent) and `result`.
If a record cannot be written, `AuditUnavailable` is raised and trigger tools refuse (fail closed).
The token never appears here: records carry its fingerprint only.

`JsonlFileSink` writes each line whole or not at all, repairs a torn tail without losing its bytes, and
refuses a file it cannot trust (a symlink, not a regular file, another user's, writable by others).
"""

from __future__ import annotations

import base64
import errno
import fcntl
import hashlib
import json
import logging
import os
import stat
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, Protocol

from mcp_ci_tools.domain.masking import describe_value, mask
from mcp_ci_tools.domain.timestamps import Clock, rfc3339

__all__ = [
    "STDOUT",
    "AuditLog",
    "AuditRecord",
    "AuditSink",
    "AuditUnavailable",
    "Confirmation",
    "Decision",
    "JsonlFileSink",
    "Outcome",
    "RecordObserver",
    "StdoutSink",
    "TraceIdSource",
    "UnsafeAuditFile",
    "WriteFunction",
]

log = logging.getLogger("mcp_ci_tools.audit")

Decision = Literal["allowed", "denied"]
Outcome = Literal["success", "error", "unknown", "denied"]
# How a trigger call was confirmed by the user: not asked (no confirmation configured for the tool), asked
# and accepted ("elicited"), declined or cancelled, or the client cannot be asked ("unsupported").
Confirmation = Literal["not_required", "elicited", "declined", "cancelled", "unsupported"]
RecordObserver = Callable[["AuditRecord"], None]
TraceIdSource = Callable[[], "str | None"]


class AuditUnavailable(Exception):
    """The audit record could not be made durable."""


class AuditSink(Protocol):
    def write(self, line: str, *, durable: bool) -> None:
        """Append one line; raise `OSError` if it was not written (and, when `durable`, synced to disk)."""
        ...


class UnsafeAuditFile(OSError):
    """The audit path is not a file this server may trust (a symlink, not a regular file, another user's, or
    writable by others), or its tail cannot be repaired; nothing was written."""


WriteFunction = Callable[[int, bytes], int]

_OPEN_FLAGS = os.O_RDWR | os.O_APPEND | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_NOT_A_FILE = {errno.ELOOP, errno.EMLINK, errno.EISDIR, errno.ENXIO, errno.EOPNOTSUPP}
_CHUNK = 64 * 1024
_MAX_FRAGMENT = 1024 * 1024  # a longer tail without a newline is no audit log: refuse rather than copy it


class JsonlFileSink:
    """Appends whole lines to a JSONL file that only this server's user can write.

    - Opened per record, so log rotation is safe, with `O_NOFOLLOW` relative to its directory, and refused
      (`UnsafeAuditFile`) if it is a symlink, not a regular file, owned by another user or writable by group
      or others, or if its directory belongs to another user than this one or root, or is writable by others
      without the sticky bit. A new file is made 0600, a missing directory 0700.
    - Every write holds an exclusive `flock` on the file (and a lock in this process), so the lines of
      concurrent writers, threads here or other server processes, never interleave.
    - A line is written whole or not at all: a failed or short write (or a failed fsync) is cut off again
      (`ftruncate` to the size before it), so an `OSError` leaves no trace of the line.
    - A torn tail (the last line lacks its newline: a crash, or a writer that does not lock) is repaired
      before the next line. A tail that is a whole JSON object only gets its newline. Any other fragment is
      kept as evidence: copied durably to `<name>.torn` first, then cut off and replaced, at the same place,
      by a line `{"ts":…,"event":"torn","offset":…,"bytes":…,"sha256":…,"fragment_b64":…}`. So every line
      parses as JSON and no byte is lost, even if the repair itself is interrupted.
    """

    def __init__(self, path: Path, *, clock: Clock = time.time, write: WriteFunction = os.write) -> None:
        self.path = path
        self.quarantine = path.with_name(path.name + ".torn")
        self._clock = clock
        self._write = write  # the one `write(2)` seam, so tests can fill the disk mid-line
        self._lock = threading.Lock()
        self._directory_made = False

    def write(self, line: str, *, durable: bool) -> None:
        if "\n" in line:
            raise ValueError("an audit line must not contain a newline")
        with self._lock, self._locked_file() as (directory, fd):
            self._repair_tail(directory, fd)
            self._append(fd, (line + "\n").encode(), durable=durable)

    def repair(self) -> int:
        """Check the file and repair a torn tail now (e.g. at start-up) rather than at the next write; return
        how many bytes were quarantined. Raises `OSError` (`UnsafeAuditFile`) as `write` would."""
        with self._lock, self._locked_file() as (directory, fd):
            return self._repair_tail(directory, fd)

    # opening and checking ------------------------------------------------------------------------------

    def _refuse(self, problem: str, path: Path | None = None) -> UnsafeAuditFile:
        return UnsafeAuditFile(f"MCP_CI_AUDIT_LOG {path or self.path} {problem}")

    @contextmanager
    def _locked_file(self) -> Iterator[tuple[int, int]]:
        directory = self._open_directory()
        try:
            fd = self._open_file(directory, self.path)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)  # released when fd is closed
                yield directory, fd
            finally:
                os.close(fd)
        finally:
            os.close(directory)

    def _open_directory(self) -> int:
        parent = self.path.parent
        if not self._directory_made:
            parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._directory_made = True
        fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            info = os.fstat(fd)
            user = os.geteuid()
            if info.st_uid not in (user, 0):
                raise self._refuse(
                    f"is in directory {parent} owned by uid {info.st_uid}, not by this server's user "
                    f"(uid {user}) or root"
                )
            if info.st_mode & 0o022 and not info.st_mode & stat.S_ISVTX:
                raise self._refuse(
                    f"is in directory {parent} that other users can write "
                    f"(mode {stat.S_IMODE(info.st_mode):04o}), so they could replace or delete it"
                )
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _open_file(self, directory: int, path: Path) -> int:
        """`path` (in `directory`) opened for appending, created 0600 if missing, or `UnsafeAuditFile`."""
        created = False
        try:
            try:
                fd = os.open(path.name, _OPEN_FLAGS, dir_fd=directory)
            except FileNotFoundError:
                try:
                    fd = os.open(path.name, _OPEN_FLAGS | os.O_CREAT | os.O_EXCL, 0o600, dir_fd=directory)
                    created = True
                except FileExistsError:  # another writer made it meanwhile (or it is a dangling symlink)
                    fd = os.open(path.name, _OPEN_FLAGS, dir_fd=directory)
        except OSError as error:
            if error.errno in _NOT_A_FILE:
                raise self._refuse(self._what_is(directory, path), path) from error
            raise
        try:
            info = os.fstat(fd)
            user = os.geteuid()
            if not stat.S_ISREG(info.st_mode):
                raise self._refuse(f"is not a regular file ({_kind(info.st_mode)})", path)
            if info.st_uid != user:
                raise self._refuse(
                    f"is owned by uid {info.st_uid}, not by this server's user (uid {user})", path
                )
            if info.st_mode & 0o022:
                raise self._refuse(
                    f"is writable by other users (mode {stat.S_IMODE(info.st_mode):04o}; make it 0600)", path
                )
            if created:
                os.fsync(directory)  # the new file's name is as durable as its first line
        except BaseException:
            os.close(fd)
            raise
        return fd

    @staticmethod
    def _what_is(directory: int, path: Path) -> str:
        try:
            mode = os.lstat(path.name, dir_fd=directory).st_mode
        except OSError:
            return "cannot be opened as a regular file"
        if stat.S_ISLNK(mode):
            return "is a symbolic link (writes would land in the file it points to)"
        return f"is not a regular file ({_kind(mode)})"

    # writing whole lines --------------------------------------------------------------------------------

    def _append(self, fd: int, data: bytes, *, durable: bool) -> None:
        """Append `data` whole and (when `durable`) synced, or cut the file back to where it was and raise."""
        before = os.fstat(fd).st_size
        try:
            done = 0
            while done < len(data):
                written = self._write(fd, data[done:])
                if written <= 0:
                    raise OSError(errno.EIO, "write(2) wrote nothing")
                done += written
            if durable:
                os.fsync(fd)
        except OSError:
            self._cut_back(fd, before, data)
            raise

    def _cut_back(self, fd: int, before: int, data: bytes) -> None:
        """Remove what a failed append left after `before`, if it is (a prefix of) our own line."""
        try:
            size = os.fstat(fd).st_size
            if (
                before < size <= before + len(data)
                and _pread(fd, before, size - before) == data[: size - before]
            ):
                os.ftruncate(fd, before)
                os.fsync(fd)
        except OSError:
            log.warning(
                "could not cut a failed audit line off %s; it is repaired at the next write", self.path
            )

    # repairing a torn tail ------------------------------------------------------------------------------

    def _repair_tail(self, directory: int, fd: int) -> int:
        size = os.fstat(fd).st_size
        if size == 0 or _pread(fd, size - 1, 1) == b"\n":
            return 0
        start = _last_line_start(fd, size)
        if size - start > _MAX_FRAGMENT:
            raise self._refuse(f"ends in {size - start} bytes without a newline: not a JSON-lines audit file")
        fragment = _pread(fd, start, size - start)
        if _is_json_object(fragment):  # a whole record that only lacks its newline
            self._append(fd, b"\n", durable=True)
            return 0
        marker = self._torn_line(start, fragment)
        self._save_to_quarantine(directory, marker)  # durable before anything is removed
        os.ftruncate(fd, start)
        self._append(fd, marker, durable=True)
        log.warning(
            "audit log %s ended in a torn line of %d bytes (a crash or an unlocked writer); it is kept as an "
            '"event":"torn" record there and in %s',
            self.path,
            len(fragment),
            self.quarantine,
        )
        return len(fragment)

    def _torn_line(self, offset: int, fragment: bytes) -> bytes:
        record = {
            "ts": rfc3339(self._clock(), milliseconds=True),
            "event": "torn",
            "offset": offset,
            "bytes": len(fragment),
            "sha256": hashlib.sha256(fragment).hexdigest(),
            "fragment_b64": base64.b64encode(fragment).decode(),
        }
        return (json.dumps(record, separators=(",", ":")) + "\n").encode()

    def _save_to_quarantine(self, directory: int, marker: bytes) -> None:
        fd = self._open_file(directory, self.quarantine)
        try:
            size = os.fstat(fd).st_size
            if size and _pread(fd, size - 1, 1) != b"\n":
                # An interrupted earlier copy: its fragment is still in the audit file, which is cut only after
                # its copy here is durable, so the partial copy can go.
                os.ftruncate(fd, _last_line_start(fd, size))
            self._append(fd, marker, durable=True)
        finally:
            os.close(fd)


def _pread(fd: int, offset: int, count: int) -> bytes:
    parts: list[bytes] = []
    while count > 0:
        part = os.pread(fd, count, offset)
        if not part:
            break
        parts.append(part)
        offset += len(part)
        count -= len(part)
    return b"".join(parts)


def _last_line_start(fd: int, size: int) -> int:
    """The offset just after the last newline before `size` (0 if there is none)."""
    end = size
    while end > 0:
        start = max(0, end - _CHUNK)
        newline = _pread(fd, start, end - start).rfind(b"\n")
        if newline >= 0:
            return start + newline + 1
        end = start
    return 0


def _is_json_object(data: bytes) -> bool:
    try:
        return isinstance(json.loads(data), dict)
    except ValueError:
        return False


def _kind(mode: int) -> str:
    kinds = [
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISLNK, "a symbolic link"),
    ]
    return next((name for test, name in kinds if test(mode)), f"file type {stat.S_IFMT(mode):o}")


STDOUT = Path("-")  # MCP_CI_AUDIT_LOG=-: the records go to standard output (HTTP transports only)


class StdoutSink:
    """Writes each record as one line to standard output, for a container's log collector.

    Only with the HTTP transports, where stdout carries nothing else (logs go to stderr); over stdio it is
    the protocol channel, so configuration refuses `-` there. Each line is one `write(2)` under a lock, so
    lines never interleave; `durable` cannot be more than that on a pipe (fsync does not apply to one).
    """

    def __init__(self, fd: int = 1, *, write: WriteFunction = os.write) -> None:
        self._fd = fd
        self._write = write
        self._lock = threading.Lock()

    def write(self, line: str, *, durable: bool) -> None:
        if "\n" in line:
            raise ValueError("an audit line must not contain a newline")
        data = (line + "\n").encode()
        with self._lock:
            done = 0
            while done < len(data):
                written = self._write(self._fd, data[done:])
                if written <= 0:
                    raise OSError(errno.EIO, "write(2) to standard output wrote nothing")
                done += written


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

    def write(self, record: AuditRecord, *, durable: bool) -> None:
        line = self.render(record)
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
        trace_id = self._trace_id()
        if trace_id is not None:
            line["trace_id"] = trace_id
        return json.dumps(line, separators=(",", ":"), ensure_ascii=False)
