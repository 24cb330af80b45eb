"""End to end: SDK client → `mcp-ci-tools` over stdio → the sandbox over HTTP → SQLite, for every tool."""

from __future__ import annotations

import json
import sqlite3
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


def _params(sandbox: SandboxHandle, tmp_path: Path, role: str) -> StdioServerParameters:
    env = {
        "PATH": "",
        "HOME": str(tmp_path),
        "INFRABOX_URL": sandbox.url,
        "INFRABOX_MCP_TOKEN": SANDBOX_TOKENS[role].token,
        "MCP_CI_ALLOW_TRIGGER": "true",
        "MCP_CI_AUDIT_LOG": str(tmp_path / "audit.jsonl"),
    }
    return StdioServerParameters(command=sys.executable, args=["-m", "mcp_ci_tools"], env=env)


def _jobs_of(db: Path, build_id: str) -> dict[str, dict[str, Any]]:
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        rows = conn.execute("SELECT * FROM job WHERE build_id = ?", (build_id,)).fetchall()
    return {row["name"]: dict(row) for row in rows}


def _count(db: Path, sql: str, *args: Any) -> int:
    with sqlite3.connect(db) as conn:
        count: int = conn.execute(sql, args).fetchone()[0]
        return count


async def test_every_tool_works_against_the_sandbox(sandbox: SandboxHandle, tmp_path: Path) -> None:
    db = tmp_path / "sandbox.sqlite3"
    P = SEED.payments
    with open(tmp_path / "server.log", "w") as errlog:
        async with Client(stdio_client(_params(sandbox, tmp_path, "trigger"), errlog=errlog)) as client:

            async def call(tool: str, **args: Any) -> dict[str, Any]:
                result = await client.call_tool(tool, args)
                assert not result.is_error, text_of(result)
                content: dict[str, Any] = result.structured_content or {}
                return content

            projects = await call("list_projects")
            assert {p["name"] for p in projects["projects"]} == {"payments-service", "web-frontend"}

            red = await call("list_builds", project_id=P, status="failure")
            assert SEED.failed_build in [b["id"] for b in red["builds"]]

            build = await call("get_build", project_id=P, build_id=SEED.failed_build)
            assert build["state_counts"] == {"failure": 1, "finished": 2, "skipped": 1}

            job = await call("get_job", project_id=P, job_id=SEED.failed_test_job)
            assert job["job"]["name"] == "test" and job["job"]["state"] == "failure"

            log = await call("get_job_log", project_id=P, job_id=SEED.failed_test_job, tail_lines=40)
            assert log["total_bytes"] > 0 and log["masked_secrets"] >= 1
            assert SANDBOX_TOKENS["trigger"].token[7:] not in log["text"]

            tests = await call("get_test_results", project_id=P, job_id=SEED.failed_test_job)
            assert tests["failed_total"] == 2 and len(tests["tests"]) == 2

            diagnosis = await call("diagnose_build", project_id=P, build_id=SEED.failed_build)
            assert diagnosis["problem_jobs"][0]["job"]["name"] == "test"
            assert diagnosis["problem_jobs"][0]["failed_tests_total"] == 2

            rerun = await call("rerun_job", project_id=P, job_id=SEED.unstable_test_job)
            assert _jobs_of(db, SEED.unstable_build)["test.1"]["id"] == rerun["new_job_id"]
            assert "deploy.1" not in _jobs_of(db, SEED.unstable_build)

            restarted = await call("restart_job", project_id=P, job_id=SEED.failed_test_job)
            assert restarted["jobs_restarted"] == 2
            assert {"test.1", "deploy.1"} <= set(_jobs_of(db, SEED.failed_build))

            new_build = await call("restart_build", project_id=P, build_id=SEED.failed_build)
            with sqlite3.connect(db) as conn:
                counter = conn.execute(
                    "SELECT restart_counter FROM build WHERE id = ?", (new_build["new_build_id"],)
                ).fetchone()
            assert counter == (new_build["restart_counter"],)

            aborted = await call("abort_build", project_id=P, build_id=SEED.running_build)
            assert aborted["jobs_aborted"] == _count(
                db,
                "SELECT COUNT(*) FROM abort WHERE job_id IN (SELECT id FROM job WHERE build_id = ?)",
                SEED.running_build,
            )

            await call("abort_job", project_id=SEED.frontend, job_id=SEED.frontend_e2e_job)
            assert _count(db, "SELECT COUNT(*) FROM abort WHERE job_id = ?", SEED.frontend_e2e_job) == 1

            who = await call("whoami")
            assert who["trigger_budget"]["remaining"] == 0

            sixth = await client.call_tool("rerun_job", {"project_id": P, "job_id": SEED.failed_build_job})
            assert sixth.is_error and "Trigger budget used up" in text_of(sixth)

    audit = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert sum(r["event"] == "attempt" for r in audit) == 5
    assert _count(db, "SELECT COUNT(*) FROM mcp_access_log WHERE status = 'success'") >= 5


async def test_a_token_without_trigger_permission_is_refused_by_the_sandbox_once(sandbox, tmp_path) -> None:
    db = tmp_path / "sandbox.sqlite3"
    before = _count(db, "SELECT COUNT(*) FROM mcp_access_log")
    with open(tmp_path / "server.log", "w") as errlog:
        async with Client(stdio_client(_params(sandbox, tmp_path, "read_only"), errlog=errlog)) as client:
            args = {"project_id": SEED.payments, "job_id": SEED.unstable_test_job}
            first = await client.call_tool("rerun_job", args)
            second = await client.call_tool("restart_job", args)

    assert "does not have trigger permission" in text_of(first)
    assert "answered earlier" in text_of(second)
    assert _count(db, "SELECT COUNT(*) FROM mcp_access_log WHERE status = 'forbidden'") == 1
    assert _count(db, "SELECT COUNT(*) FROM mcp_access_log") - before == 2  # attempt + forbidden, once


async def test_the_sandbox_flag_serves_stdio_against_an_embedded_sandbox(tmp_path: Path) -> None:
    env = {"PATH": "", "HOME": str(tmp_path), "TMPDIR": str(tmp_path)}
    params = StdioServerParameters(command=sys.executable, args=["-m", "mcp_ci_tools", "--sandbox"], env=env)
    with open(tmp_path / "server.log", "w") as errlog:
        async with Client(stdio_client(params, errlog=errlog)) as client:
            projects = await client.call_tool("list_projects", {})
            rerun = await client.call_tool(
                "rerun_job", {"project_id": SEED.payments, "job_id": SEED.unstable_test_job}
            )

    assert {p["name"] for p in projects.structured_content["projects"]} == {
        "payments-service",
        "web-frontend",
    }
    assert rerun.is_error is False and rerun.structured_content["new_job_id"]
    log = (tmp_path / "server.log").read_text()
    assert "sandbox InfraBox at http://127.0.0.1:" in log
    assert SANDBOX_TOKENS["read_only"].token in log  # the sandbox's demo tokens are printed for the user


def test_the_sandbox_command_serves_the_api_and_prints_url_and_tokens(tmp_path: Path) -> None:
    import socket
    import subprocess
    import time

    import httpx

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [
        sys.executable,
        "-m",
        "mcp_ci_tools",
        "sandbox",
        "--port",
        str(port),
        "--db",
        str(tmp_path / "s.db"),
    ]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as process:
        try:
            deadline = time.monotonic() + 20
            while True:
                try:
                    answer = httpx.get(
                        f"http://127.0.0.1:{port}/api/v1/mcp/projects",
                        headers={"Authorization": f"Bearer {SANDBOX_TOKENS['trigger'].token}"},
                    )
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline, "the sandbox did not start"
                    time.sleep(0.1)
        finally:
            process.terminate()
            _, stderr = process.communicate(timeout=20)

    assert answer.status_code == 200
    assert {p["name"] for p in answer.json()} == {"payments-service", "web-frontend"}
    assert f"http://127.0.0.1:{port}" in stderr
    assert all(t.token in stderr for t in SANDBOX_TOKENS.values())


async def test_wait_for_build_follows_a_restarted_build_to_its_end(tmp_path: Path) -> None:
    events: list[tuple[float, float | None]] = []

    async def progress(progress: float, total: float | None, message: str | None) -> None:
        events.append((progress, total))

    with start_in_thread(tmp_path / "sandbox.sqlite3", job_duration_s=0.3, tick_interval_s=0.05) as handle:
        params = _params(handle, tmp_path, "trigger")
        with open(tmp_path / "server.log", "w") as errlog:
            async with Client(stdio_client(params, errlog=errlog)) as client:
                restarted = await client.call_tool(
                    "restart_build", {"project_id": SEED.payments, "build_id": SEED.failed_build}
                )
                new_build = restarted.structured_content["new_build_id"]
                waited = await client.call_tool(
                    "wait_for_build",
                    {"project_id": SEED.payments, "build_id": new_build, "timeout_s": 60},
                    progress_callback=progress,
                )

    content = waited.structured_content
    assert content["ended"] is True and content["timed_out"] is False
    assert content["build"]["status"] == "finished"
    assert content["state_counts"] == {"finished": content["jobs_total"]}
    assert events and events[-1][0] == events[-1][1] == content["jobs_total"]
