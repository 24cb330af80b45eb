"""Reading the audit trail back: check its hash chain, and pair its records into calls.

`verify(paths)` checks every line of every file: that it is a whole JSON object and that it continues the
line before it (`seq` one more, `prev` its SHA-256). Files of one series (one replica's file and its
rotated copies, e.g. `audit-a.jsonl.1`, `audit-a.jsonl`) are put in order by their `seq` and must continue
each other. What is wrong is a `Problem` (edited, missing, out of order, torn, not JSON): evidence that the
file was changed. What is only worth knowing is a `Note`: a call whose `attempt` has no `result` (the
server stopped mid-call), a torn line the server repaired after a crash, lines from before the chain.

`calls(paths)` merges the files by time and pairs each `attempt` with its `result` (by `request_id`).
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from mcp_ci_tools.audit._chain import GENESIS, digest

__all__ = [
    "AuditFile",
    "Call",
    "Line",
    "Note",
    "Problem",
    "ProblemKind",
    "Verdict",
    "calls",
    "read_file",
    "series_of",
    "verify",
]

ProblemKind = Literal["not_json", "edited", "missing", "out_of_order", "torn", "unchained", "unreadable"]
# A rotated copy keeps the live file's name and adds a suffix: `.1`, `.2.gz`, `-20261202`, `.old`.
_ROTATION_SUFFIX = re.compile(r"(?:\.[0-9]+|-[0-9]{8,10}|\.old)?(?:\.gz)?$")


@dataclass(frozen=True)
class Line:
    """One line of an audit file as written (without its newline) and, if it is one, its JSON object."""

    path: Path
    number: int  # 1-based
    raw: bytes
    record: dict[str, Any] | None

    @property
    def seq(self) -> int | None:
        seq = self.record.get("seq") if self.record else None
        return seq if isinstance(seq, int) and not isinstance(seq, bool) and seq > 0 else None

    @property
    def prev(self) -> str | None:
        prev = self.record.get("prev") if self.record else None
        return prev if isinstance(prev, str) else None

    @property
    def where(self) -> str:
        return f"{self.path}:{self.number}"


@dataclass(frozen=True)
class AuditFile:
    path: Path
    lines: tuple[Line, ...]
    torn_tail: bytes | None  # bytes after the last newline: a line cut short


@dataclass(frozen=True)
class Problem:
    """Evidence that the trail was changed after it was written."""

    kind: ProblemKind
    path: Path
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.kind}: {self.message}"


@dataclass(frozen=True)
class Note:
    """Worth knowing, not a sign of tampering: a call cut short by a crash, a repaired torn line, …"""

    path: Path
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


@dataclass
class Verdict:
    files: int = 0
    records: int = 0
    chains: list[tuple[Path, int, int]] = field(default_factory=list)  # (last file, first seq, last seq)
    problems: list[Problem] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)

    @property
    def whole(self) -> bool:
        return not self.problems


def read_file(path: Path) -> AuditFile:
    """The lines of one audit file (`.gz` for a compressed rotated copy); `OSError` if it cannot be read."""
    data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    *whole, rest = data.split(b"\n")
    lines = tuple(Line(path, number, raw, _object(raw)) for number, raw in enumerate(whole, start=1))
    return AuditFile(path, lines, rest or None)


def _object(raw: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def series_of(path: Path) -> str:
    """The live file a path belongs to: itself, or the file it is a rotated copy of."""
    name = path.name
    base = (
        name[: name.index(".jsonl") + len(".jsonl")] if ".jsonl" in name else _ROTATION_SUFFIX.sub("", name)
    )
    return str(path.with_name(base or name))


# verify ----------------------------------------------------------------------------------------------------


def verify(paths: Sequence[Path]) -> Verdict:
    verdict = Verdict()
    files: list[AuditFile] = []
    for path in paths:
        try:
            files.append(read_file(path))
        except (OSError, EOFError, gzip.BadGzipFile) as error:
            verdict.problems.append(Problem("unreadable", path, 0, f"cannot be read: {error}"))
    verdict.files = len(files)
    verdict.records = sum(len(file.lines) for file in files)
    by_series: dict[str, list[AuditFile]] = {}
    for file in files:
        by_series.setdefault(series_of(file.path), []).append(file)
    for series in by_series.values():
        _verify_series(sorted(series, key=_first_seq), verdict)
    verdict.notes.extend(_orphans(files))
    return verdict


def _first_seq(file: AuditFile) -> int:
    return next((line.seq for line in file.lines if line.seq is not None), 0)


def _verify_series(files: list[AuditFile], verdict: Verdict) -> None:
    previous: Line | None = None
    first_seq: int | None = None
    for file in files:
        if not file.lines and file.torn_tail is None:
            continue
        if previous is not None and file.lines:
            _check_link(previous, file.lines[0], verdict, across_files=True)
        elif file.lines:
            first = file.lines[0]
            if first.seq is not None and first.prev != GENESIS and first.seq > 1:
                verdict.notes.append(
                    Note(
                        file.path,
                        1,
                        f"begins at seq {first.seq}: it continues an earlier file (a rotated copy) that was not "
                        "given; give it too to check the link",
                    )
                )
        _verify_file(file, verdict)
        if file.lines:
            previous = file.lines[-1]
            seqs = [line.seq for line in file.lines if line.seq is not None]
            if seqs and first_seq is None:
                first_seq = seqs[0]
        if file.torn_tail is not None:
            number = len(file.lines) + 1
            verdict.problems.append(
                Problem(
                    "torn",
                    file.path,
                    number,
                    f"the last line is cut short ({len(file.torn_tail)} bytes, no newline): the file was cut, "
                    "or the server crashed while writing it and has not started since (it repairs this itself)",
                )
            )
    if previous is not None and previous.seq is not None:
        verdict.chains.append((previous.path, first_seq or 1, previous.seq))


def _verify_file(file: AuditFile, verdict: Verdict) -> None:
    base: Line | None = None  # the line the next one must continue (None after a line that is not JSON)
    chained = False
    legacy = 0
    for line in file.lines:
        if line.record is None:
            _problem(verdict, "not_json", line, "is not a JSON object: the line was edited or corrupted")
            base = None
            continue
        if line.record.get("event") == "torn":
            verdict.notes.append(
                Note(
                    file.path,
                    line.number,
                    f"records a torn line the server repaired ({line.record.get('bytes')} bytes at offset "
                    f"{line.record.get('offset')}, kept in fragment_b64): it crashed while writing",
                )
            )
        if line.seq is None:
            if chained:
                _problem(
                    verdict, "unchained", line, "has no seq after chained lines: it was inserted or edited"
                )
            else:
                legacy += 1
            base = line
            continue
        if base is not None:
            _check_link(base, line, verdict, across_files=False)
        base, chained = line, True
    if legacy:
        verdict.notes.append(
            Note(
                file.path,
                1,
                f"{legacy} line(s) before the chain began (written by a version without seq/prev)",
            )
        )


def _check_link(before: Line, line: Line, verdict: Verdict, *, across_files: bool) -> None:
    seq = line.seq
    if seq is None:
        return
    if before.seq is None:  # the chain begins after lines written before it existed
        begins = seq == 1 and line.prev in (digest(before.raw), GENESIS)
        if not begins:
            _problem(verdict, "edited", line, f"seq {seq} does not continue line {before.where}")
        return
    if seq == 1 and line.prev == GENESIS and not across_files:
        verdict.notes.append(
            Note(
                line.path,
                line.number,
                "a new chain begins (a restart of a server writing to standard output)",
            )
        )
        return
    expected = before.seq + 1
    linked = line.prev == digest(before.raw)
    if seq == expected and linked:
        return
    if seq == expected:
        _problem(
            verdict,
            "edited",
            before,
            f"seq {before.seq} was edited: its SHA-256 is not the one seq {seq} at {line.where} recorded",
        )
    elif seq > expected:
        gap = f"seq {expected}" if seq == expected + 1 else f"seq {expected} to {seq - 1}"
        where = "at the end of the file before" if across_files else "before this line"
        _problem(verdict, "missing", line, f"{gap} missing {where} (lines deleted, or the file cut short)")
    else:
        _problem(
            verdict,
            "out_of_order",
            line,
            f"seq {seq} comes after seq {before.seq}: lines were moved or swapped",
        )


def _problem(verdict: Verdict, kind: ProblemKind, line: Line, message: str) -> None:
    verdict.problems.append(Problem(kind, line.path, line.number, message))


def _orphans(files: Iterable[AuditFile]) -> Iterator[Note]:
    for call in _paired(files):
        if call.orphan:
            yield Note(
                call.path,
                call.line,
                f"{call.tool} {call.target or ''} (request {call.request_id}) has an attempt and no result: the "
                "server stopped mid-call (a crash or kill -9); the outcome is unknown, check the target's state",
            )


# calls -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One tool call: its `result` record, its `attempt` too for a trigger (an orphan has only that)."""

    ts: datetime
    record: dict[str, Any]  # the result (or, for an orphan, the attempt)
    attempt: dict[str, Any] | None
    path: Path
    line: int

    @property
    def orphan(self) -> bool:
        return self.attempt is not None and self.record is self.attempt

    @property
    def tool(self) -> str:
        return str(self.record.get("tool", "?"))

    @property
    def token(self) -> str:
        return str(self.record.get("token", "?"))

    @property
    def request_id(self) -> str:
        return str(self.record.get("request_id", ""))

    @property
    def decision(self) -> str:
        return str(self.record.get("decision", "?"))

    @property
    def outcome(self) -> str:
        return "no_result" if self.orphan else str(self.record.get("outcome", "?"))

    @property
    def target(self) -> str | None:
        parts = [
            f"{name}={self.record[f'{name}_id']}"
            for name in ("project", "build", "job")
            if self.record.get(f"{name}_id")
        ]
        return " ".join(parts) or None


def calls(paths: Sequence[Path]) -> list[Call]:
    """Every call in the files, merged by time (files that cannot be read raise `OSError`)."""
    return sorted(_paired(read_file(path) for path in paths), key=lambda call: call.ts)


def _paired(files: Iterable[AuditFile]) -> Iterator[Call]:
    """Each result with its attempt (files in any order); an attempt no result names is an orphan."""
    records = [
        (line, line.record)
        for file in files
        for line in file.lines
        if line.record is not None and line.record.get("event") in ("attempt", "result")
    ]
    attempts = {
        str(record["request_id"]): record
        for _, record in records
        if record["event"] == "attempt" and record.get("request_id")
    }
    answered = {str(record.get("request_id")) for _, record in records if record["event"] == "result"}
    for line, record in records:
        request_id = str(record.get("request_id", ""))
        if record["event"] == "result":
            attempt = attempts.get(request_id) if request_id else None
            yield Call(_ts(attempt or record), record, attempt, line.path, line.number)
        elif request_id not in answered:
            yield Call(_ts(record), record, record, line.path, line.number)


def _ts(record: dict[str, Any]) -> datetime:
    try:
        return datetime.fromisoformat(str(record.get("ts", "")).replace("Z", "+00:00"))
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)
