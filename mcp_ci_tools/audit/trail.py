"""Reading the audit trail back: check its hash chain, and pair its records into calls.

`verify(paths)` checks every line of every file: that it is a whole JSON object and that it continues the
line before it (`seq` one more, `prev` its SHA-256). Files of one series (one replica's file and its
rotated copies, e.g. `audit-a.jsonl.1`, `audit-a.jsonl`) are put in order by their `seq` and must continue
each other. What is wrong is a `Problem` (edited, missing, out of order, torn, not JSON): evidence that the
file was changed. What is only worth knowing is a `Note`: a call whose `attempt` has no `result` (the
server stopped mid-call), a torn line the server repaired after a crash, lines from before the chain.

`calls(paths, where)` pairs each `attempt` with its `result` (by `request_id`, within a series) and merges
the calls `where` keeps by time. Files are read a line at a time: only what is kept stays in memory.
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from mcp_ci_tools.audit._chain import GENESIS, digest

__all__ = [
    "Call",
    "Line",
    "Note",
    "Problem",
    "ProblemKind",
    "Verdict",
    "calls",
    "iter_calls",
    "read_lines",
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
    ended: bool = True  # False: the last line of its file, cut short (no newline)

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


def read_lines(path: Path) -> Iterator[Line]:
    """The lines of one audit file (`.gz` for a compressed rotated copy), read as they come, so a trail of
    any length is checked in little memory; a last line without its newline has `ended` False. Raises
    `OSError` (or `EOFError` / `gzip.BadGzipFile` for a broken `.gz`) if it cannot be read."""
    with gzip.open(path) if path.suffix == ".gz" else path.open("rb") as stream:
        for number, data in enumerate(stream, start=1):
            ended = data.endswith(b"\n")
            raw = data.removesuffix(b"\n")
            yield Line(path, number, raw, _object(raw) if ended else None, ended)


def _first_line(path: Path) -> Line | None:
    try:
        return next(read_lines(path), None)
    except (OSError, EOFError, gzip.BadGzipFile):
        return None


def _object(raw: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def series_of(path: Path) -> str:
    """The live file a path belongs to: itself, or the file it is a rotated copy of."""
    name = path.name
    if ".jsonl" in name:
        return str(path.with_name(name[: name.rindex(".jsonl") + len(".jsonl")]))
    return str(path.with_name(_ROTATION_SUFFIX.sub("", name, count=1) or name))


def _series(paths: Sequence[Path]) -> list[list[Path]]:
    """The paths grouped by series, each in chain order (by the `seq` of its first line)."""
    grouped: dict[str, list[Path]] = {}
    for path in paths:
        grouped.setdefault(series_of(path), []).append(path)

    def first_seq(path: Path) -> int:
        first = _first_line(path)
        return first.seq or 0 if first is not None else 0

    return [sorted(group, key=first_seq) for group in grouped.values()]


# verify ----------------------------------------------------------------------------------------------------


def verify(paths: Sequence[Path]) -> Verdict:
    verdict = Verdict()
    for series in _series(paths):
        _SeriesCheck(verdict).run(series)
    return verdict


class _SeriesCheck:
    """Checks the files of one series in chain order, one line at a time."""

    def __init__(self, verdict: Verdict) -> None:
        self.verdict = verdict
        self.previous: Line | None = None  # the last line of the files checked so far
        self.first_seq: int | None = None
        self.attempts: dict[str, Line] = {}  # attempts whose result has not come yet

    def run(self, paths: list[Path]) -> None:
        for path in paths:
            try:
                self._file(path)
            except (OSError, EOFError, gzip.BadGzipFile) as error:
                self.verdict.problems.append(Problem("unreadable", path, 0, f"cannot be read: {error}"))
                continue
            self.verdict.files += 1
        if self.previous is not None and self.previous.seq is not None:
            self.verdict.chains.append((self.previous.path, self.first_seq or 1, self.previous.seq))
        for attempt in self.attempts.values():
            self.verdict.notes.append(Note(attempt.path, attempt.number, _orphan_message(attempt)))

    def _file(self, path: Path) -> None:
        base = self.previous  # the line the next one must continue (None after a line that is not JSON)
        chained = False
        legacy = 0
        for line in read_lines(path):
            if line.number == 1 and base is None:
                self._begins(line)
            if not line.ended:
                _problem(
                    self.verdict,
                    "torn",
                    line,
                    f"the last line is cut short ({len(line.raw)} bytes, no newline): the file was cut, or the "
                    "server crashed while writing it and has not started since (it repairs this itself)",
                )
                break
            self.verdict.records += 1
            if line.record is None:
                _problem(
                    self.verdict, "not_json", line, "is not a JSON object: the line was edited or corrupted"
                )
                base = None
                continue
            self._pair(line)
            if line.seq is None:
                if chained:
                    _problem(
                        self.verdict,
                        "unchained",
                        line,
                        "has no seq after chained lines: it was inserted or edited",
                    )
                else:
                    legacy += 1
                base = self.previous = line
                continue
            if base is not None:
                _check_link(base, line, self.verdict, across_files=line.number == 1)
            if self.first_seq is None:
                self.first_seq = line.seq
            base = self.previous = line
            chained = True
        if legacy:
            self.verdict.notes.append(
                Note(
                    path,
                    1,
                    f"{legacy} line(s) before the chain began (written by a version without seq/prev)",
                )
            )

    def _begins(self, first: Line) -> None:
        if first.seq is not None and first.seq > 1 and first.prev != GENESIS:
            self.verdict.notes.append(
                Note(
                    first.path,
                    1,
                    f"begins at seq {first.seq}: it continues an earlier file (a rotated copy) that was not "
                    "given; give it too to check the link",
                )
            )

    def _pair(self, line: Line) -> None:
        record = line.record or {}
        event, request_id = record.get("event"), str(record.get("request_id") or "")
        if event == "torn":
            self.verdict.notes.append(
                Note(
                    line.path,
                    line.number,
                    f"records a torn line the server repaired ({record.get('bytes')} bytes at offset "
                    f"{record.get('offset')}, kept in fragment_b64): it crashed while writing",
                )
            )
        elif event == "attempt" and request_id:
            self.attempts[request_id] = line
        elif event == "result" and request_id:
            self.attempts.pop(request_id, None)


def _orphan_message(attempt: Line) -> str:
    record = attempt.record or {}
    target = " ".join(
        f"{name}={record[f'{name}_id']}" for name in ("project", "build", "job") if record.get(f"{name}_id")
    )
    return (
        f"{record.get('tool', '?')} {target} (request {record.get('request_id')}) has an attempt and no result: "
        "the server stopped mid-call (a crash or kill -9); the outcome is unknown, check the target's state"
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


def calls(paths: Sequence[Path], where: Callable[[Call], bool] = lambda _: True) -> list[Call]:
    """The calls in the files that `where` keeps, merged by time (`OSError` if a file cannot be read)."""
    return sorted((call for call in iter_calls(paths) if where(call)), key=lambda call: call.ts)


def iter_calls(paths: Sequence[Path]) -> Iterator[Call]:
    """Every call in the files, as each result (or the end of its series, for an orphan) is read."""
    for series in _series(paths):
        attempts: dict[str, tuple[Line, dict[str, Any]]] = {}
        for path in series:
            for line in read_lines(path):
                record = line.record
                if record is None or record.get("event") not in ("attempt", "result"):
                    continue
                request_id = str(record.get("request_id") or "")
                if record["event"] == "attempt" and request_id:
                    attempts[request_id] = (line, record)
                    continue
                first = attempts.pop(request_id, None) if request_id else None
                attempt = first[1] if first else None
                yield Call(_ts(attempt or record), record, attempt, line.path, line.number)
        for line, attempt in attempts.values():
            yield Call(_ts(attempt), attempt, attempt, line.path, line.number)


def _ts(record: dict[str, Any]) -> datetime:
    try:
        return datetime.fromisoformat(str(record.get("ts", "")).replace("Z", "+00:00"))
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)
