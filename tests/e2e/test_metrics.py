"""`/metrics` as Prometheus scrapes it: beside /healthz on the HTTP transports (open, or behind its own
token), on --metrics-port over stdio, and configuration mistakes stopping the command at start."""

from __future__ import annotations

import hashlib
import json
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

from mcp_ci_tools.sandbox import SANDBOX_TOKENS, SEED, SandboxHandle, start_in_thread
from tests.conftest import BUILD_ID, JOB_ID, PROJECT_ID, TOKEN, free_port
from tests.e2e.test_http import audit, connect, http_settings, serving
from tests.e2e.test_stdio import COMMAND, _env
from tests.processes import INITIALIZE, wait_until_answering
from tests.unit.test_metrics import assert_labels_fixed, calls, samples

pytestmark = pytest.mark.anyio

ALICE = SANDBOX_TOKENS["trigger"].token
BOB = SANDBOX_TOKENS["read_only"].token
METRICS_TOKEN = "scrape-0123456789abcdef"


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[SandboxHandle]:
    with start_in_thread(tmp_path / "sandbox.sqlite3", job_duration_s=0, tick_interval_s=0.05) as handle:
        yield handle


def audited_calls(tmp_path: Path) -> Counter[tuple[str, str, str, str]]:
    return Counter(
        (r["tool"], r["decision"], r["outcome"], r.get("reason", ""))
        for r in audit(tmp_path)
        if r["event"] == "result"
    )


async def test_http_metrics_count_exactly_the_calls_made_and_never_show_a_token(sandbox, tmp_path) -> None:
    settings = http_settings(sandbox, tmp_path, trigger_per_minute=1)
    build = {"project_id": SEED.payments, "build_id": SEED.failed_build}
    with serving(settings) as base:
        async with connect(base, "streamable-http", ALICE) as alice:
            for _ in range(2):
                assert not (await alice.call_tool("get_build", build)).is_error
            assert not (await alice.call_tool("restart_build", build)).is_error  # takes the one budget slot
            limited = await alice.call_tool(
                "rerun_job", {"project_id": SEED.payments, "job_id": SEED.unstable_test_job}
            )
        async with connect(base, "streamable-http", BOB) as bob:
            refused = await bob.call_tool("restart_build", build)  # InfraBox: no trigger permission
        async with httpx.AsyncClient(base_url=base) as http:
            answer = await http.get("/metrics")

    assert limited.is_error and refused.is_error
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain; version=")
    text = answer.text
    assert calls(text) == {
        ("get_build", "allowed", "success", ""): 2,
        ("restart_build", "allowed", "success", ""): 1,
        ("rerun_job", "denied", "denied", "rate_limited"): 1,
        ("restart_build", "allowed", "error", "no_trigger_permission"): 1,
    }
    assert calls(text) == audited_calls(tmp_path)  # one count per audited call, no more
    assert samples(text, "mcp_ci_trigger_budget_refusals_total")[(("budget", "trigger"),)] == 1
    restart = "/api/v1/mcp/projects/{project_id}/builds/{build_id}/restart"
    timed = samples(text, "mcp_ci_infrabox_request_duration_seconds_count")
    assert timed[(("endpoint", restart), ("method", "POST"), ("status_class", "2xx"))] == 1
    assert timed[(("endpoint", restart), ("method", "POST"), ("status_class", "4xx"))] == 1
    assert samples(text, "mcp_ci_open_sessions") == {(): 0}  # every client has closed its session
    assert_labels_fixed(text)
    for token in (ALICE, BOB):
        assert token not in text and hashlib.sha256(token.encode()).hexdigest() not in text
    assert SEED.payments not in text and SEED.failed_build not in text


async def test_open_sessions_are_counted_while_they_are_open(sandbox, tmp_path) -> None:
    with serving(http_settings(sandbox, tmp_path)) as base:
        async with (
            connect(base, "streamable-http", ALICE, mode="legacy"),
            connect(base, "sse", BOB, mode="legacy"),
            httpx.AsyncClient(base_url=base) as http,
        ):
            during = samples((await http.get("/metrics")).text, "mcp_ci_open_sessions")

    assert during == {(): 2}


async def test_the_metrics_token_is_required_when_set(sandbox, tmp_path) -> None:
    settings = http_settings(sandbox, tmp_path, metrics_token=METRICS_TOKEN)
    with serving(settings) as base:
        async with httpx.AsyncClient(base_url=base) as http:
            without = await http.get("/metrics")
            wrong = await http.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}x"})
            mcp_token = await http.get("/metrics", headers={"Authorization": f"Bearer {ALICE}"})
            right = await http.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
            health = await http.get("/healthz")

    assert (without.status_code, wrong.status_code, mcp_token.status_code) == (401, 401, 401)
    assert without.headers["www-authenticate"].startswith("Bearer")
    assert METRICS_TOKEN not in without.text
    assert right.status_code == 200 and "mcp_ci_build_info" in right.text
    assert health.status_code == 200


async def test_stdio_serves_metrics_on_its_own_port_behind_its_token(tmp_path) -> None:
    port = free_port()
    params = StdioServerParameters(
        command=COMMAND,
        args=["--metrics-port", str(port)],
        env=_env(tmp_path, MCP_CI_METRICS_TOKEN=METRICS_TOKEN),
    )
    with open(tmp_path / "stderr.log", "w") as errlog:
        async with Client(stdio_client(params, errlog=errlog)) as client:
            for _ in range(2):
                await client.call_tool("whoami", {})
            await client.call_tool("restart_build", {"project_id": PROJECT_ID, "build_id": BUILD_ID})
            unreachable = await client.call_tool("get_job", {"project_id": PROJECT_ID, "job_id": JOB_ID})
            async with httpx.AsyncClient() as http:
                refused = await http.get(f"http://127.0.0.1:{port}/metrics")
                answer = await http.get(
                    f"http://127.0.0.1:{port}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}
                )

    assert unreachable.is_error
    assert refused.status_code == 401
    text = answer.text
    assert calls(text) == {
        ("whoami", "allowed", "success", ""): 2,
        ("restart_build", "denied", "denied", "trigger_not_allowed"): 1,
        ("get_job", "allowed", "error", "unreachable"): 1,
    }
    attempts = samples(text, "mcp_ci_infrabox_request_duration_seconds_count")
    job = "/api/v1/mcp/projects/{project_id}/jobs/{job_id}"
    key = (("endpoint", job), ("method", "GET"), ("status_class", "error"))
    assert attempts == {key: 3}  # each attempt, the retries too
    assert_labels_fixed(text)
    assert TOKEN not in text and hashlib.sha256(TOKEN.encode()).hexdigest() not in text
    assert f"metrics at http://127.0.0.1:{port}/metrics" in (tmp_path / "stderr.log").read_text()


def test_stdout_carries_only_mcp_messages_with_the_metrics_port_on(tmp_path) -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "mcp_ci_tools", "--metrics-port", str(port)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**_env(tmp_path), "PYTHONUNBUFFERED": "1"},
        text=True,
    )
    assert process.stdin and process.stdout and process.stderr
    try:
        scraped = wait_until_answering(f"http://127.0.0.1:{port}/metrics", process)
        process.stdin.write(json.dumps(INITIALIZE) + "\n")
        process.stdin.flush()
        first = process.stdout.readline()
        httpx.get(f"http://127.0.0.1:{port}/metrics")
        httpx.get(f"http://127.0.0.1:{port}/elsewhere")
        process.stdin.close()
        rest = process.stdout.readlines()
        process.wait(timeout=10)
    finally:
        process.kill()
        process.stdout.close()
        process.stderr.close()

    assert "mcp_ci_build_info" in scraped.text
    assert [json.loads(line)["id"] for line in [first, *rest] if line.strip()] == [1]
    assert process.returncode == 0


def test_a_metrics_port_in_use_stops_the_stdio_server_with_exit_2(tmp_path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [COMMAND, "--metrics-port", str(port)],
            env=_env(tmp_path),
            capture_output=True,
            text=True,
            timeout=30,
            stdin=subprocess.DEVNULL,
        )

    assert done.returncode == 2 and done.stdout == ""
    assert f"configuration error: MCP_CI_METRICS_PORT: cannot listen on 127.0.0.1:{port}" in done.stderr


@pytest.mark.parametrize(
    ("extra", "args", "variable", "says"),
    [
        ({"MCP_CI_METRICS_PORT": "9100"}, ["--transport", "http"], "MCP_CI_METRICS_PORT", "stdio only"),
        ({}, ["--transport", "sse", "--metrics-port", "9100"], "MCP_CI_METRICS_PORT", "on the HTTP port"),
        ({"MCP_CI_METRICS_PORT": "0"}, [], "MCP_CI_METRICS_PORT", "greater than or equal to 1"),
        ({"MCP_CI_METRICS_PORT": "70000"}, [], "MCP_CI_METRICS_PORT", "less than or equal to 65535"),
        ({"MCP_CI_METRICS_PORT": "x"}, [], "MCP_CI_METRICS_PORT", "valid integer"),
        ({"MCP_CI_METRICS_TOKEN": METRICS_TOKEN}, [], "MCP_CI_METRICS_TOKEN", "without MCP_CI_METRICS_PORT"),
        (
            {"MCP_CI_METRICS_TOKEN": "short", "MCP_CI_METRICS_PORT": "9100"},
            [],
            "MCP_CI_METRICS_TOKEN",
            "at least 16 printable",
        ),
    ],
)
def test_a_bad_metrics_setting_exits_2_with_one_line_naming_it(tmp_path, extra, args, variable, says) -> None:
    env = _env(tmp_path, **extra)
    if "--transport" in args:
        del env["INFRABOX_MCP_TOKEN"]

    done = subprocess.run(
        [COMMAND, *args], env=env, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL
    )

    assert done.returncode == 2 and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"mcp-ci-tools: configuration error: {variable}: ") and says in lines[0]
    assert "short" not in lines[0] and METRICS_TOKEN not in lines[0]


@pytest.mark.parametrize("transport", ["streamable-http", "sse", "http"])
async def test_every_http_transport_serves_metrics_beside_healthz(transport, sandbox, tmp_path) -> None:
    with serving(http_settings(sandbox, tmp_path, transport=transport)) as base:
        async with httpx.AsyncClient(base_url=base) as http:
            answer = await http.get("/metrics")

    assert answer.status_code == 200
    assert samples(answer.text, "mcp_ci_build_info")


async def test_metrics_are_still_answered_while_draining() -> None:
    from mcp_ci_tools.http_app import Gate

    reached: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        reached.append(scope["path"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    statuses: list[int] = []

    async def send(message: Any) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    async def receive() -> Any:
        return {"type": "http.request", "body": b""}

    gate = Gate(app, max_streams=1)
    gate.draining = True
    for path in ("/metrics", "/healthz", "/readyz", "/mcp"):
        await gate({"type": "http", "method": "GET", "path": path, "headers": []}, receive, send)

    assert reached == ["/metrics", "/healthz"]
    assert statuses == [200, 200, 503, 503]
