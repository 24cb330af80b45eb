"""The hash chain as the sinks write it, and `verify` reading it back: every way a trail can be changed is
named at its line; restarts, rotations, legacy files and crashes are not mistaken for tampering."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import logging
import os
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from mcp_ci_tools.audit import GENESIS, AuditLog, AuditRecord, JsonlFileSink, StdoutSink
from mcp_ci_tools.audit.trail import Verdict, series_of, verify

TOKEN_SHA256 = "ab" * 32


def record(request_id: str, event: str = "result", **overrides: Any) -> AuditRecord:
    base = AuditRecord(
        event="result",
        tool="restart_build",
        token="sha256:abababababab",
        token_sha256=TOKEN_SHA256,
        request_id=request_id,
        decision="allowed",
        outcome="success",
    )
    return dataclasses.replace(base, event=event, **overrides)  # type: ignore[arg-type]


def write(path: Path, *request_ids: str, sink: JsonlFileSink | None = None) -> JsonlFileSink:
    sink = sink or JsonlFileSink(path)
    log = AuditLog(sink)
    for request_id in request_ids:
        log.write_now(record(request_id), durable=False)
    return sink


def lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines()


def parsed(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in lines(path)]


def sha(line: bytes) -> str:
    return hashlib.sha256(line).hexdigest()


def assert_one_chain(*paths: Path) -> None:
    """Every line of the files, in order, continues the one before it, from the first seq."""
    raw = [line for path in paths for line in lines(path)]
    records = [json.loads(line) for line in raw]
    assert [r["seq"] for r in records] == list(range(records[0]["seq"], records[0]["seq"] + len(records)))
    assert [r["prev"] for r in records[1:]] == [sha(line) for line in raw[:-1]]


def problems(verdict: Verdict) -> list[tuple[str, str, int]]:
    return [(p.kind, p.path.name, p.line) for p in verdict.problems]


# the chain as written -----------------------------------------------------------------------------------


def test_the_first_line_starts_a_chain_and_each_next_line_names_the_one_before(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write(path, "a", "b", "c")

    first, *_ = parsed(path)
    assert (first["seq"], first["prev"]) == (1, GENESIS)
    assert list(first)[:3] == ["seq", "prev", "ts"]  # the link is the first thing on the line
    assert_one_chain(path)


def test_a_restarted_server_continues_the_chain_from_the_files_last_line(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write(path, "a", "b")
    write(path, "c")  # a new sink: a new process, after a restart

    assert [r["request_id"] for r in parsed(path)] == ["a", "b", "c"]
    assert_one_chain(path)
    assert verify([path]).whole


def test_two_writers_sharing_one_file_keep_one_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    one, other = JsonlFileSink(path), JsonlFileSink(path)
    for n in range(6):
        write(path, f"{n}", sink=one if n % 3 else other)

    assert_one_chain(path)
    assert verify([path]).whole


def test_after_a_rotation_the_new_file_continues_the_chain_of_the_old(tmp_path: Path) -> None:
    path, rotated = tmp_path / "audit.jsonl", tmp_path / "audit.jsonl.1"
    sink = write(path, "a", "b")
    path.rename(rotated)  # logrotate's default: move the file away; the server creates a new one

    write(path, "c", "d", sink=sink)

    [first_of_new, _] = parsed(path)
    assert first_of_new["seq"] == 3
    assert first_of_new["prev"] == sha(lines(rotated)[-1])
    assert_one_chain(rotated, path)
    verdict = verify([path, rotated])  # in any order: a series is put in order by seq
    assert verdict.whole and verdict.notes == []
    assert [(p.name, first, last) for p, first, last in verdict.chains] == [("audit.jsonl", 1, 4)]


def test_copytruncate_rotation_also_continues_the_chain(tmp_path: Path) -> None:
    path, rotated = tmp_path / "audit.jsonl", tmp_path / "audit.jsonl.1"
    sink = write(path, "a", "b")
    rotated.write_bytes(path.read_bytes())
    os.truncate(path, 0)

    write(path, "c", sink=sink)

    assert_one_chain(rotated, path)
    assert verify([rotated, path]).whole


def test_a_file_given_without_its_rotated_predecessor_is_whole_and_says_where_it_begins(
    tmp_path: Path,
) -> None:
    path = tmp_path / "audit.jsonl"
    sink = write(path, "a", "b")
    path.rename(tmp_path / "elsewhere.jsonl")
    write(path, "c", sink=sink)

    verdict = verify([path])

    assert verdict.whole
    assert [str(note) for note in verdict.notes] == [
        f"{path}:1: begins at seq 3: it continues an earlier file (a rotated copy) that was not given; give it "
        "too to check the link"
    ]


def test_lines_removed_while_the_server_runs_leave_a_gap_it_does_not_paper_over(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "audit.jsonl"
    sink = write(path, "a", "b", "c", "d")
    kept = b"".join(line + b"\n" for line in lines(path)[:2])
    path.write_bytes(kept)  # cut at a line boundary: every remaining line is whole and chained

    with caplog.at_level(logging.WARNING, logger="mcp_ci_tools.audit"):
        write(path, "e", sink=sink)

    assert [r["seq"] for r in parsed(path)] == [1, 2, 5]
    assert (
        "was changed behind this server: its last line is seq 2, this server last wrote seq 4" in caplog.text
    )
    verdict = verify([path])
    assert problems(verdict) == [("missing", "audit.jsonl", 3)]
    assert str(verdict.problems[0]).endswith(
        "missing: seq 3 to 4 missing before this line (lines deleted, or the file cut short)"
    )


def test_a_last_line_edited_while_the_server_runs_is_caught_by_the_next_line(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    sink = write(path, "a", "b")
    first, last = lines(path)
    rewrite(path, [first, last.replace(b'"outcome":"success"', b'"outcome":"error"')])

    write(path, "c", sink=sink)

    assert problems(verify([path])) == [("edited", "audit.jsonl", 2)]


def test_a_legacy_file_without_a_chain_is_continued_and_verified_from_where_the_chain_begins(
    tmp_path: Path,
) -> None:
    path = tmp_path / "audit.jsonl"
    path.write_bytes(b'{"ts":"2026-11-01T00:00:00.000Z","event":"result","request_id":"old"}\n')
    path.chmod(0o600)

    write(path, "new")

    [old, new] = lines(path)
    assert json.loads(new)["seq"] == 1 and json.loads(new)["prev"] == sha(old)
    verdict = verify([path])
    assert verdict.whole
    assert [note.message for note in verdict.notes] == [
        "1 line(s) before the chain began (written by a version without seq/prev)"
    ]


def test_standard_output_lines_are_chained_too(tmp_path: Path) -> None:
    path = tmp_path / "collected.jsonl"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        log = AuditLog(StdoutSink(fd))
        for request_id in ("a", "b", "c"):
            log.write_now(record(request_id), durable=True)
        restarted = AuditLog(StdoutSink(fd))  # a pipe cannot be read back: a new process starts a new chain
        restarted.write_now(record("d"), durable=True)
    finally:
        os.close(fd)

    records = parsed(path)
    assert [(r["seq"], r["prev"] == GENESIS) for r in records] == [
        (1, True),
        (2, False),
        (3, False),
        (1, True),
    ]
    verdict = verify([path])
    assert verdict.whole
    assert [note.message for note in verdict.notes] == [
        "a new chain begins (a restart of a server writing to standard output)"
    ]


# verify: every way of changing a file is named at its line --------------------------------------------


@pytest.fixture
def trail(tmp_path: Path) -> Path:
    path = tmp_path / "audit.jsonl"
    write(path, *"abcdef")
    assert verify([path]).whole
    return path


def rewrite(path: Path, changed: list[bytes]) -> None:
    path.write_bytes(b"".join(line + b"\n" for line in changed))


def test_an_edited_field_is_named_at_its_line(trail: Path) -> None:
    changed = lines(trail)
    changed[2] = changed[2].replace(b'"decision":"allowed"', b'"decision":"denied"')
    rewrite(trail, changed)

    verdict = verify([trail])

    assert problems(verdict) == [("edited", "audit.jsonl", 3)]
    assert "seq 3 was edited: its SHA-256 is not the one seq 4" in verdict.problems[0].message


def test_a_deleted_line_is_named_by_the_line_after_the_gap(trail: Path) -> None:
    changed = lines(trail)
    del changed[3]
    rewrite(trail, changed)

    assert problems(verify([trail])) == [("missing", "audit.jsonl", 4)]


def test_two_swapped_lines_are_found(trail: Path) -> None:
    changed = lines(trail)
    changed[2], changed[3] = changed[3], changed[2]
    rewrite(trail, changed)

    verdict = verify([trail])

    assert not verdict.whole
    assert problems(verdict)[0] == ("missing", "audit.jsonl", 3)  # seq 4 where seq 3 belongs
    assert ("out_of_order", "audit.jsonl", 4) in problems(verdict)


def test_a_torn_last_line_is_named(trail: Path) -> None:
    data = trail.read_bytes()
    trail.write_bytes(data[:-40])

    verdict = verify([trail])

    assert problems(verdict) == [("torn", "audit.jsonl", 6)]


def test_a_line_that_is_not_json_is_named(trail: Path) -> None:
    changed = lines(trail)
    changed[1] = b"rm -rf the evidence"
    rewrite(trail, changed)

    assert problems(verify([trail]))[0] == ("not_json", "audit.jsonl", 2)


def test_an_inserted_unchained_line_is_named(trail: Path) -> None:
    changed = lines(trail)
    changed.insert(2, b'{"ts":"2026-12-02T00:00:00.000Z","event":"result","tool":"whoami"}')
    rewrite(trail, changed)

    assert problems(verify([trail]))[0] == ("unchained", "audit.jsonl", 3)


def test_a_rotated_file_truncated_at_a_line_boundary_is_caught_by_the_file_that_follows(
    tmp_path: Path,
) -> None:
    path, rotated = tmp_path / "audit.jsonl", tmp_path / "audit.jsonl.1"
    sink = write(path, "a", "b", "c")
    path.rename(rotated)
    write(path, "d", sink=sink)
    rewrite(rotated, lines(rotated)[:2])  # the last line of the old file removed: whole lines remain

    verdict = verify([rotated, path])

    assert problems(verdict) == [("missing", "audit.jsonl", 1)]
    assert "seq 3 missing at the end of the file before" in verdict.problems[0].message


def test_a_torn_line_the_server_repaired_is_a_note_not_a_problem(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write(path, "a")
    with path.open("ab") as crashed:
        crashed.write(b'{"seq":2,"prev":"')

    write(path, "b")

    verdict = verify([path])
    assert verdict.whole
    assert [note.line for note in verdict.notes] == [2]
    assert "records a torn line the server repaired" in verdict.notes[0].message


def test_an_attempt_without_its_result_is_reported_as_a_crash_mid_call(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(JsonlFileSink(path))
    log.write_now(record("done", event="attempt", build_id="b-1"), durable=True)
    log.write_now(record("done", build_id="b-1"), durable=True)
    log.write_now(record("cut", event="attempt", build_id="b-2"), durable=True)

    verdict = verify([path])

    assert verdict.whole
    [note] = verdict.notes
    assert note.line == 3
    assert note.message.startswith("restart_build build=b-2 (request cut) has an attempt and no result")


@pytest.mark.parametrize("rotated_name", ["audit.jsonl.1", "audit.jsonl-20261202.gz"])
def test_a_server_started_after_a_rotation_continues_the_newest_rotated_copy(
    tmp_path: Path, rotated_name: str
) -> None:
    path = tmp_path / "audit.jsonl"
    write(path, "a", "b")
    older = tmp_path / "audit.jsonl.2"
    older.write_bytes(b'{"seq":1,"prev":"' + GENESIS.encode() + b'"}\n')
    os.utime(older, (1, 1))
    (tmp_path / "audit.jsonl.torn").write_bytes(b'{"event":"torn"}\n')  # quarantine: never a predecessor
    rotated = tmp_path / rotated_name
    data = path.read_bytes()
    rotated.write_bytes(gzip.compress(data) if rotated_name.endswith(".gz") else data)
    path.unlink()

    write(path, "c")  # a new process: nothing in memory, an empty file

    [first] = parsed(path)
    assert (first["seq"], first["prev"]) == (3, sha(data.splitlines()[-1]))
    assert verify([rotated, path]).whole


@pytest.mark.parametrize(
    ("name", "series"),
    [
        ("audit.jsonl.1", "audit.jsonl"),
        ("audit-web-2.jsonl-20261202.gz", "audit-web-2.jsonl"),
        ("audit-web.log.3", "audit-web.log"),
        ("audit-web-2.log", "audit-web-2.log"),  # another replica, not a rotated copy of audit-web.log
    ],
)
def test_a_rotated_copy_belongs_to_its_live_files_series_and_replicas_stay_apart(
    name: str, series: str
) -> None:
    assert series_of(Path("/a") / name) == f"/a/{series}"


def test_a_long_trail_is_verified_line_by_line_not_held_in_memory(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    sink = JsonlFileSink(path)
    log = AuditLog(sink)
    for n in range(10_000):
        log.write_now(record(f"r-{n}", build_id="b" * 36), durable=False)
    size = path.stat().st_size

    tracemalloc.start()
    try:
        verdict = verify([path])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert verdict.whole and verdict.records == 10_000
    assert peak < size / 10, f"peak {peak} B for a {size} B file"
