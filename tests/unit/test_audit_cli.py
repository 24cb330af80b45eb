"""`mcp-ci-tools audit show|stats|verify` over files written by the real sinks: filters, pairing, merging
the files of several replicas by time, and the files `MCP_CI_AUDIT_LOG` names."""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path
from typing import Any

import pytest

from mcp_ci_tools.audit import AuditLog, AuditRecord, JsonlFileSink
from mcp_ci_tools.audit_cli import main
from mcp_ci_tools.config import expand_audit_path
from tests.conftest import FakeClock

ALICE, BOB = "sha256:a11ce0000000", "sha256:b0b000000000"
PROJECT, BUILD, JOB = (f"{n}0000000-0000-4000-8000-000000000001" for n in "abc")


def record(token: str, tool: str, request_id: str, **fields: Any) -> AuditRecord:
    base = AuditRecord(
        event="result",
        tool=tool,
        token=token,
        token_sha256=token.removeprefix("sha256:") + "f" * 52,
        request_id=request_id,
        decision="allowed",
        outcome="success",
        project_id=PROJECT,
    )
    return dataclasses.replace(base, **fields)


@pytest.fixture
def replicas(tmp_path: Path) -> tuple[Path, Path]:
    """Two replicas' files, their calls interleaved in time: a (t=0, 2, 4) and b (t=1, 3)."""
    one, two = tmp_path / "audit-one.jsonl", tmp_path / "audit-two.jsonl"
    clock = FakeClock(1_800_000_000.0)
    logs = {one: AuditLog(JsonlFileSink(one), clock=clock), two: AuditLog(JsonlFileSink(two), clock=clock)}
    steps: list[tuple[Path, AuditRecord]] = [
        (one, record(ALICE, "get_build", "r1", build_id=BUILD, duration_ms=12.0, http_status=200)),
        (two, record(BOB, "restart_build", "r2", event="attempt", build_id=BUILD, confirmation="elicited")),
        (
            two,
            record(
                BOB,
                "restart_build",
                "r2",
                build_id=BUILD,
                http_status=200,
                duration_ms=40.0,
                confirmation="elicited",
                detail={"new_build_id": "d0000000-0000-4000-8000-000000000009"},
            ),
        ),
        (
            one,
            record(
                ALICE,
                "abort_job",
                "r3",
                job_id=JOB,
                decision="denied",
                outcome="denied",
                reason="rate_limited",
                duration_ms=0.5,
            ),
        ),
        (one, record(ALICE, "rerun_job", "r4", event="attempt", job_id=JOB)),
    ]
    for path, step in steps:
        logs[path].write_now(step, durable=False)
        clock.now += 1
    return one, two


def run(*argv: str, environ: dict[str, str] | None = None) -> tuple[int, str]:
    out = io.StringIO()
    code = main(list(argv), environ or {}, out)
    return code, out.getvalue()


def test_show_merges_replicas_by_time_and_pairs_attempts_with_results(replicas: tuple[Path, Path]) -> None:
    code, out = run("show", *map(str, replicas))

    assert code == 0
    assert out.splitlines() == [
        f"2027-01-15T08:00:00.000Z  {ALICE}  get_build          project={PROJECT} build={BUILD}  allowed/success"
        "  HTTP 200  12 ms",
        f"2027-01-15T08:00:01.000Z  {BOB}  restart_build      project={PROJECT} build={BUILD}  allowed/success"
        "  HTTP 200  40 ms  confirmation=elicited",
        f"2027-01-15T08:00:03.000Z  {ALICE}  abort_job          project={PROJECT} job={JOB}  denied/denied "
        "(rate_limited)  0 ms",
        f"2027-01-15T08:00:04.000Z  {ALICE}  rerun_job          project={PROJECT} job={JOB}  allowed/no_result"
        "  NO RESULT: the server stopped mid-call; the outcome is unknown",
    ]


@pytest.mark.parametrize(
    ("filters", "tools"),
    [
        (["--token", ALICE], ["get_build", "abort_job", "rerun_job"]),
        (["--token", "b0b0"], ["restart_build"]),  # a prefix of the fingerprint
        (["--token", "a11ce0000000ffff"], ["get_build", "abort_job", "rerun_job"]),  # of token_sha256
        (["--build", BUILD], ["get_build", "restart_build"]),
        (["--build", "d0000000-0000-4000-8000-000000000009"], ["restart_build"]),  # the call that created it
        (["--job", JOB, "--outcome", "no_result"], ["rerun_job"]),
        (["--tool", "abort_job", "--tool", "get_build"], ["get_build", "abort_job"]),
        (["--outcome", "denied"], ["abort_job"]),
        (
            ["--since", "2027-01-15T08:00:01Z", "--until", "2027-01-15T08:00:03.000Z"],
            ["restart_build", "abort_job"],
        ),
        (["--since", "2027-01-15"], ["get_build", "restart_build", "abort_job", "rerun_job"]),
        (["--project", "e0000000-0000-4000-8000-000000000001"], []),
    ],
)
def test_show_filters(replicas: tuple[Path, Path], filters: list[str], tools: list[str]) -> None:
    code, out = run("show", *map(str, replicas), "--json", *filters)

    assert code == 0
    assert [json.loads(line)["tool"] for line in out.splitlines()] == tools


def test_show_json_carries_the_pairing_and_where_each_call_is(replicas: tuple[Path, Path]) -> None:
    _, out = run("show", *map(str, replicas), "--json", "--tool", "restart_build")

    [call] = [json.loads(line) for line in out.splitlines()]
    assert call["attempt_ts"] == "2027-01-15T08:00:01.000Z" and call["ts"] == "2027-01-15T08:00:01.000Z"
    assert (call["outcome"], call["orphan"], call["confirmation"]) == ("success", False, "elicited")
    assert (Path(call["file"]).name, call["line"]) == ("audit-two.jsonl", 2)


def test_stats_counts_per_tool_token_and_denial_reason(replicas: tuple[Path, Path]) -> None:
    code, out = run("stats", *map(str, replicas), "--json")

    assert code == 0
    stats = json.loads(out)
    assert stats["calls"] == 4
    assert stats["by_tool"]["restart_build"] == {"calls": 1, "allowed": 1, "success": 1, "sent": 1}
    assert stats["by_tool"]["rerun_job"] == {"calls": 1, "allowed": 1, "no_result": 1, "sent": 1}
    assert stats["by_token"][ALICE] == {
        "calls": 3,
        "allowed": 2,
        "success": 1,
        "denied": 1,
        "no_result": 1,
        "sent": 1,
    }
    assert stats["denied_by_reason"] == {"rate_limited": 1}
    _, text = run("stats", *map(str, replicas))
    assert text.splitlines()[0] == "4 call(s): 3 allowed, 1 denied; 2 trigger(s) sent, 1 without result"


def test_without_files_the_configured_pattern_reads_every_replica_and_rotated_copy(
    replicas: tuple[Path, Path], tmp_path: Path
) -> None:
    one, _ = replicas
    one.rename(tmp_path / "audit-one.jsonl.1")
    environ = {"MCP_CI_AUDIT_LOG": str(tmp_path / "audit-{host}.jsonl")}

    code, out = run("verify", environ=environ)

    assert code == 0
    assert out.splitlines()[0] == (
        "audit verify: whole: 2 file(s), 5 record(s), chains: audit-one.jsonl.1 seq 1-3, audit-two.jsonl seq 1-2; "
        "1 note(s)"
    )
    assert len(run("show", environ=environ)[1].splitlines()) == 4


def test_no_matching_file_or_stdout_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run("show", environ={"MCP_CI_AUDIT_LOG": str(tmp_path / "none-{host}.jsonl")})[0] == 2
    assert "no audit file matches" in capsys.readouterr().err
    assert run("verify", environ={"MCP_CI_AUDIT_LOG": "-"})[0] == 2
    assert "give the files your log collector kept" in capsys.readouterr().err
    assert run("show", str(tmp_path / "missing.jsonl"))[0] == 2
    assert "cannot read" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        run("show", "--since", "last tuesday")
    assert exited.value.code == 2
    assert "neither an ISO 8601 time" in capsys.readouterr().err


def test_host_in_the_audit_path_becomes_a_safe_file_name() -> None:
    assert expand_audit_path("/var/lib/a/audit-{host}.jsonl", "mcp-ci-tools-7d9f-x2") == Path(
        "/var/lib/a/audit-mcp-ci-tools-7d9f-x2.jsonl"
    )
    assert expand_audit_path("/a/{host}.jsonl", "../evil/host") == Path("/a/_evil_host.jsonl")
    with pytest.raises(ValueError, match="the only placeholder is"):
        expand_audit_path("/a/{pid}.jsonl", "h")
