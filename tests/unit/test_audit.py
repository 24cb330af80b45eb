"""The audit log: JSON lines, durable appends, failures surfaced as AuditUnavailable."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import pytest

from mcp_ci_tools.audit import AuditLog, AuditRecord, AuditUnavailable, JsonlFileSink
from tests.conftest import BrokenSink, FakeClock, ListSink

TOKEN_SHA256 = "0123456789abefefefefefefefefefefefefefefefefefefefefefefefefefef"


def record(**overrides: Any) -> AuditRecord:
    base = AuditRecord(
        event="result",
        tool="abort_job",
        token="sha256:0123456789ab",
        token_sha256=TOKEN_SHA256,
        request_id="r-1",
        decision="allowed",
    )
    return dataclasses.replace(base, **overrides)


def test_a_record_is_one_json_line_with_timestamp_and_fingerprint() -> None:
    sink = ListSink()
    log = AuditLog(sink, clock=FakeClock(1_800_000_000.25))

    log.write_now(
        record(outcome="success", http_status=200, job_id="j", detail={"new_job_id": "n"}), durable=True
    )

    [line] = sink.lines
    assert "\n" not in line
    assert json.loads(line) == {
        "ts": "2027-01-15T08:00:00.250Z",
        "token": "sha256:0123456789ab",
        "event": "result",
        "token_sha256": TOKEN_SHA256,
        "tool": "abort_job",
        "request_id": "r-1",
        "decision": "allowed",
        "outcome": "success",
        "job_id": "j",
        "http_status": 200,
        "detail": {"new_job_id": "n"},
    }
    assert sink.durable == [True]


def test_an_unwritable_sink_raises_audit_unavailable() -> None:
    log = AuditLog(BrokenSink())

    with pytest.raises(AuditUnavailable, match="No space left on device"):
        log.write_now(record(), durable=True)


def test_the_file_sink_appends_creates_private_files_and_keeps_old_lines(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "dir" / "audit.jsonl"
    path.parent.mkdir(parents=True)
    path.write_text('{"old":true}\n')
    os.chmod(path, 0o600)
    log = AuditLog(JsonlFileSink(path))

    log.write_now(record(request_id="a"), durable=True)
    log.write_now(record(request_id="b"), durable=False)

    lines = path.read_text().splitlines()
    assert [json.loads(line).get("request_id") for line in lines] == [None, "a", "b"]


def test_the_file_sink_creates_missing_directories_privately(tmp_path: Path) -> None:
    path = tmp_path / "state" / "mcp-ci-tools" / "audit.jsonl"

    JsonlFileSink(path).write("{}", durable=True)

    assert path.read_text() == '{"seq":1,"prev":"' + "0" * 64 + '"}\n'
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700


def test_a_file_sink_in_an_unwritable_place_fails_loudly(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    log = AuditLog(JsonlFileSink(blocker / "audit.jsonl"))

    with pytest.raises(AuditUnavailable):
        log.write_now(record(), durable=True)


@pytest.mark.parametrize(
    ("given", "audited"),
    [
        ("7d3f1c2b-4a5e-4f60-9b8a-1c2d3e4f5a6b", "7d3f1c2b-4a5e-4f60-9b8a-1c2d3e4f5a6b"),
        ("../admin", "../admin"),  # ids are audited as the caller sent them, before they are validated
        ("ib_mcp_" + "ab" * 24, "'[MASKED:infrabox-token]'"),
        ("x" * 65, "a 65-character string starting 'xxxxxxxxxxxxxxxxxxxxxxxx'"),
    ],
)
def test_ids_are_audited_as_given_unless_long_or_secret(given: str, audited: str) -> None:
    sink = ListSink()

    AuditLog(sink).write_now(record(project_id=given, build_id=given, job_id=given), durable=False)

    [line] = sink.records
    assert (line["project_id"], line["build_id"], line["job_id"]) == (audited, audited, audited)


@pytest.mark.anyio
async def test_a_record_that_cannot_be_written_after_a_decision_goes_to_the_error_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = AuditLog(BrokenSink())

    await log.write_or_log(record(outcome="success", job_id="ib_mcp_" + "cd" * 24), durable=True)

    [logged] = [r for r in caplog.records if r.name == "mcp_ci_tools.audit"]
    assert logged.levelname == "ERROR"
    assert "No space left on device" in logged.getMessage()
    assert '"outcome":"success"' in logged.getMessage()
    assert "cdcdcd" not in logged.getMessage()


def test_each_record_carries_the_current_trace_id_and_reaches_every_observer() -> None:
    sink, seen = ListSink(), list[AuditRecord]()
    trace = iter(["0af7651916cd43dd8448eb211c80319c", None])
    log = AuditLog(sink, trace_id=lambda: next(trace), observers=[seen.append])

    log.write_now(record(confirmation="elicited"), durable=True)
    log.write_now(record(request_id="r-2"), durable=True)

    first, second = (json.loads(line) for line in sink.lines)
    assert first["trace_id"] == "0af7651916cd43dd8448eb211c80319c"
    assert first["confirmation"] == "elicited"
    assert "trace_id" not in second
    assert [r.request_id for r in seen] == ["r-1", "r-2"]


def test_an_observer_that_fails_does_not_stop_the_record_or_the_others() -> None:
    sink, seen = ListSink(), list[AuditRecord]()

    def broken(_: AuditRecord) -> None:
        raise RuntimeError("metrics down")

    AuditLog(sink, observers=[broken, seen.append]).write_now(record(), durable=True)

    assert len(sink.lines) == 1
    assert [r.request_id for r in seen] == ["r-1"]


def test_a_record_the_sink_refused_is_still_observed() -> None:
    seen: list[AuditRecord] = []
    with pytest.raises(AuditUnavailable):
        AuditLog(BrokenSink(), observers=[seen.append]).write_now(record(), durable=True)
    assert len(seen) == 1
