"""`JsonlFileSink`: the audit trail as a hash-chained JSON-lines file that only this server's user can write.

Each line is written whole or not at all, a torn tail is repaired without losing its bytes, a file that
cannot be trusted (a symlink, not a regular file, another user's, writable by others) is refused, and every
line carries `seq` and `prev` (see `_chain`), continued across restarts and rotations.
"""

from __future__ import annotations

import base64
import errno
import fcntl
import gzip
import hashlib
import json
import logging
import os
import stat
import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from mcp_ci_tools.audit._chain import ChainHead, chained, head_of
from mcp_ci_tools.audit._log import SyncFunction, UnsafeAuditFile, WriteFunction
from mcp_ci_tools.domain.timestamps import Clock, rfc3339

__all__ = ["JsonlFileSink"]

log = logging.getLogger("mcp_ci_tools.audit")

_OPEN_FLAGS = os.O_RDWR | os.O_APPEND | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_NOT_A_FILE = {errno.ELOOP, errno.EMLINK, errno.EISDIR, errno.ENXIO, errno.EOPNOTSUPP}
_CHUNK = 64 * 1024
_MAX_FRAGMENT = 1024 * 1024  # a longer tail without a newline is no audit log: refuse rather than copy it


@dataclass(frozen=True)
class _Written:
    """The last line this sink wrote: its chain head, in which file (device, inode), ending where."""

    head: ChainHead
    file: tuple[int, int]
    end: int


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
      by a chained line `{…,"event":"torn","offset":…,"bytes":…,"sha256":…,"fragment_b64":…}`. So every
      line parses as JSON and no byte is lost, even if the repair itself is interrupted.
    - Each line continues the chain of the line before it in the file, read under the lock, so a restart
      or another writer sharing the file continues it. An empty file (a rotation moved the old one away)
      continues the chain this sink last wrote. If the file's last line is not the one this sink wrote and
      not a later one (lines were removed or the last one edited), the chain continues from what this sink
      wrote, so the gap stays visible to `audit verify`, and a warning is logged.
    """

    def __init__(
        self,
        path: Path,
        *,
        clock: Clock = time.time,
        write: WriteFunction = os.write,
        sync: SyncFunction = os.fsync,
    ) -> None:
        self.path = path
        self.quarantine = path.with_name(path.name + ".torn")
        self._clock = clock
        self._write = write  # the one `write(2)` seam, so tests can fill the disk mid-line
        self._sync = sync  # the `fsync(2)` seam of a record's own sync, so tests can stall or fail it
        self._lock = threading.Lock()
        self._directory_made = False
        self._written: _Written | None = None

    def write(self, line: str, *, durable: bool) -> None:
        """Append `line` as the chain's next link; when `durable`, return only once it is synced to disk.

        The fsync runs after both locks are released, on a duplicate of the descriptor: a slow disk then
        delays only the record being synced, and concurrent records' syncs overlap instead of queueing.
        """
        with self._lock, self._locked_file() as (directory, fd):
            self._repair_tail(directory, fd)
            previous, start = self._written, os.fstat(fd).st_size
            self._append_chained(fd, line, durable=False)
            if not durable:
                return
            written = self._written
            synced = os.dup(fd)  # shares the open file description, and with it the flock: release it
            fcntl.flock(synced, fcntl.LOCK_UN)
        try:
            self._sync(synced)
        except OSError:
            assert written is not None  # set by _append_chained
            self._cut_back_unsynced(written, start, previous)
            raise
        finally:
            os.close(synced)

    def _cut_back_unsynced(self, written: _Written, start: int, previous: _Written | None) -> None:
        """A record whose sync failed is cut off again while it is still the file's last line (its call is
        refused, so no request follows it). Once another line follows it, it stays: that is logged."""
        try:
            with self._lock, self._locked_file() as (_, fd):
                info = os.fstat(fd)
                last = self._written is written and (info.st_dev, info.st_ino) == written.file
                if last and info.st_size == written.end:
                    os.ftruncate(fd, start)
                    os.fsync(fd)
                    self._written = previous
                    return
        except OSError:
            pass
        log.error(
            "audit log %s: a record's fsync failed and the record could not be cut off again (another line "
            "follows it, or the file is not writable); it stays, and its call was refused",
            self.path,
        )

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

    # the chain -----------------------------------------------------------------------------------------

    def _append_chained(self, fd: int, line: str, *, durable: bool) -> None:
        """Append `line` as the next link of the chain, whole, or raise with nothing appended."""
        info = os.fstat(fd)
        data, head = chained(line, self._head_before(fd, info))
        end = self._append(fd, data, durable=durable)
        self._written = _Written(head, (info.st_dev, info.st_ino), end)

    def _head_before(self, fd: int, info: os.stat_result) -> ChainHead | None:
        """The head the next line continues (the file, `info`, ends in a whole line)."""
        known, size = self._written, info.st_size
        if known is not None and known.file == (info.st_dev, info.st_ino) and known.end == size:
            return known.head  # the last line is the one this sink wrote
        if size == 0:  # a new file continues this sink's chain, or else the one of its newest rotated copy
            return known.head if known is not None else self._rotated_head()
        start = _last_line_start(fd, size - 1)
        found = head_of(_pread(fd, start, size - start))
        if known is None or found.seq > known.head.seq:
            return found  # a restart, or another writer sharing the file wrote after this sink
        if found != known.head:
            log.warning(
                "audit log %s was changed behind this server: its last line is seq %d, this server last "
                "wrote seq %d; the chain goes on from seq %d, so `mcp-ci-tools audit verify` shows the gap",
                self.path,
                found.seq,
                known.head.seq,
                known.head.seq,
            )
        return known.head

    def _rotated_head(self) -> ChainHead | None:
        """The head of the newest rotated copy of this file (`audit.jsonl.1`, `audit.jsonl-20261202.gz`, …)
        beside it, so a server started after a rotation continues the chain (None: there is none)."""
        copies: list[tuple[float, Path]] = []
        try:
            for entry in os.scandir(self.path.parent):
                if _is_rotated_copy(entry.name, self.path.name) and entry.is_file(follow_symlinks=False):
                    copies.append((entry.stat(follow_symlinks=False).st_mtime, Path(entry.path)))
        except OSError:
            return None
        for _, copy in sorted(copies, reverse=True)[:1]:
            try:
                data = _tail_of(copy)
            except (OSError, EOFError, zlib.error):
                log.warning(
                    "audit log %s: cannot read the rotated copy %s; a new chain begins", self.path, copy
                )
                return None
            last = data.rstrip(b"\n").rpartition(b"\n")[2]
            return head_of(last) if last else None
        return None

    # writing whole lines --------------------------------------------------------------------------------

    def _append(self, fd: int, data: bytes, *, durable: bool) -> int:
        """Append `data` whole and (when `durable`) synced, or cut the file back to where it was and raise;
        return the file's size after it."""
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
        return before + len(data)

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
        self._save_to_quarantine(directory, (marker + "\n").encode())  # durable before anything is removed
        os.ftruncate(fd, start)
        self._append_chained(fd, marker, durable=True)
        log.warning(
            "audit log %s ended in a torn line of %d bytes (a crash or an unlocked writer); it is kept as an "
            '"event":"torn" record there and in %s',
            self.path,
            len(fragment),
            self.quarantine,
        )
        return len(fragment)

    def _torn_line(self, offset: int, fragment: bytes) -> str:
        record = {
            "ts": rfc3339(self._clock(), milliseconds=True),
            "event": "torn",
            "offset": offset,
            "bytes": len(fragment),
            "sha256": hashlib.sha256(fragment).hexdigest(),
            "fragment_b64": base64.b64encode(fragment).decode(),
        }
        return json.dumps(record, separators=(",", ":"))

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


def _is_rotated_copy(name: str, live: str) -> bool:
    rest = name.removeprefix(live)
    return rest != name and rest[:1] in (".", "-") and not rest.endswith(".torn")


def _tail_of(path: Path) -> bytes:
    """The last bytes of a file (whole, decompressed, for a `.gz` copy), enough to hold its last line."""
    if path.suffix == ".gz":
        with gzip.open(path) as compressed:
            tail = b""
            while chunk := compressed.read(_CHUNK):
                tail = (tail + chunk)[-_MAX_FRAGMENT:]
            return tail
    with path.open("rb") as plain:
        size = plain.seek(0, os.SEEK_END)
        plain.seek(max(0, size - _MAX_FRAGMENT))
        return plain.read()


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
