"""End to end against the sandbox: the seeded build of each failure kind is diagnosed as that kind, and the
build that recovered on retry is not a current failure, in get_build, diagnose_build and wait_for_build.

`examples/diagnose_kinds.py` prints the same verdicts for a reader.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

from mcp_ci_tools.sandbox import SANDBOX_TOKENS, SEED, SandboxHandle, start_in_thread
from tests.conftest import text_of

pytestmark = pytest.mark.anyio


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[SandboxHandle]:
    with start_in_thread(tmp_path / "sandbox.sqlite3", job_duration_s=0, tick_interval_s=0.05) as handle:
        yield handle


async def test_each_seeded_failure_kind_is_diagnosed_as_that_kind(
    sandbox: SandboxHandle, tmp_path: Path
) -> None:
    env = {
        "PATH": "",
        "HOME": str(tmp_path),
        "INFRABOX_URL": sandbox.url,
        "INFRABOX_MCP_TOKEN": SANDBOX_TOKENS["read_only"].token,
        "MCP_CI_AUDIT_LOG": str(tmp_path / "audit.jsonl"),
    }
    params = StdioServerParameters(command=sys.executable, args=["-m", "mcp_ci_tools"], env=env)
    with open(tmp_path / "server.log", "w") as errlog:
        async with Client(stdio_client(params, errlog=errlog)) as client:

            async def call(tool: str, project_id: str, build_id: str) -> dict[str, Any]:
                result = await client.call_tool(tool, {"project_id": project_id, "build_id": build_id})
                assert not result.is_error, text_of(result)
                content: dict[str, Any] = result.structured_content or {}
                return content

            kinds = {
                "infrastructure": await call("diagnose_build", SEED.payments, SEED.infrastructure_build),
                "flaky_suspect": await call("diagnose_build", SEED.payments, SEED.flaky_build),
                "deterministic_suspect": await call(
                    "diagnose_build", SEED.payments, SEED.deterministic_build
                ),
                "unknown": await call("diagnose_build", SEED.infra, SEED.unknown_build),
            }
            recovered = {
                tool: await call(tool, SEED.payments, SEED.recovered_build)
                for tool in ("get_build", "diagnose_build", "wait_for_build")
            }

    for kind, content in kinds.items():
        [problem] = content["problem_jobs"]
        print(kind, json.dumps(problem["classification"], indent=2))  # the closing note's material
        assert problem["classification"]["kind"] == kind
    assert kinds["infrastructure"]["problem_jobs"][0]["classification"]["evidence"][0] == (
        "out_of_memory: Container exited with code 137 (OOMKilled)"
    )
    assert kinds["flaky_suspect"]["problem_jobs"][0]["classification"]["evidence"] == [
        "test `test_ledger_export_streams_rows_in_order` (tests.test_ledger) fails now (test) but passed in "
        "build #36 (restart 1) of the same commit"
    ]
    assert kinds["deterministic_suspect"]["problem_jobs"][0]["classification"]["evidence"] == [
        "test `test_fx_rate_rounds_to_four_places` (tests.test_fx) fails now (test) and failed in "
        "build #37 of branch feature/fx-rates"
    ]
    assert kinds["unknown"]["problem_jobs"][0]["classification"]["evidence"] == []

    for tool, content in recovered.items():
        assert content["state_counts"] == {"finished": 4}, tool
        assert content["all_attempts_state_counts"] == {"failure": 1, "finished": 4, "skipped": 1}, tool
        history = {h["name"]: h for h in content["job_history"]}
        assert history["test"]["recovered_on_retry"] is True, tool
        assert history["test"]["current_job_id"] == SEED.recovered_retry_job, tool
        assert [a["id"] for a in history["test"]["attempts"]] == [
            SEED.recovered_failed_job,
            SEED.recovered_retry_job,
        ]
        assert (history["deploy"]["current_state"], history["deploy"]["recovered_on_retry"]) == (
            "finished",
            False,
        )
    diagnosed = recovered["diagnose_build"]
    assert diagnosed["problem_jobs"] == []
    assert [(t["name"], t["failed_in"], t["passed_in"]) for t in diagnosed["flaky_suspect_tests"]] == [
        ("test_idempotency_key_reuse_returns_first_charge", ["test"], ["test.1"])
    ]
    assert recovered["wait_for_build"]["failed_jobs"] == []
    assert "Recovered on retry" in recovered["wait_for_build"]["summary"]
