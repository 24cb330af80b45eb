"""The real command over stdio: the SDK's stdio client, raw JSON-RPC pipes, and start-up failures."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

from tests.conftest import BUILD_ID, PROJECT_ID, TOKEN, text_of
from tests.processes import INITIALIZE, INITIALIZED

pytestmark = pytest.mark.anyio

COMMAND = shutil.which("mcp-ci-tools", path=str(Path(sys.executable).parent)) or "mcp-ci-tools"


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "INFRABOX_URL": "http://127.0.0.1:9",
        "INFRABOX_MCP_TOKEN": TOKEN,
        "MCP_CI_AUDIT_LOG": str(tmp_path / "audit.jsonl"),
        **extra,
    }


async def test_the_command_serves_mcp_over_stdio_and_refuses_locally(tmp_path: Path) -> None:
    params = StdioServerParameters(command=COMMAND, args=[], env=_env(tmp_path))
    with open(tmp_path / "stderr.log", "w") as errlog:
        async with Client(stdio_client(params, errlog=errlog)) as client:
            names = {tool.name for tool in (await client.list_tools()).tools}
            refused = await client.call_tool(
                "restart_build", {"project_id": PROJECT_ID, "build_id": BUILD_ID}
            )
            invalid = await client.call_tool("abort_job", {"project_id": PROJECT_ID, "job_id": "../../x"})
            whoami = await client.call_tool("whoami", {})

    assert {"restart_build", "abort_build", "restart_job", "rerun_job", "abort_job", "whoami"} <= names
    assert refused.is_error and "no trigger permission (allow_trigger)" in text_of(refused)
    assert invalid.is_error and "job_id must be a UUID" in text_of(invalid)
    assert whoami.structured_content["token_fingerprint"].startswith("sha256:")
    audit = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert [(r["tool"], r.get("reason")) for r in audit] == [
        ("restart_build", "trigger_not_allowed"),
        ("abort_job", "invalid_input"),
        ("whoami", None),
    ]
    stderr = (tmp_path / "stderr.log").read_text()
    assert "serving MCP over stdio" in stderr
    assert TOKEN not in stderr and TOKEN not in (tmp_path / "audit.jsonl").read_text()


def test_stdout_carries_only_json_rpc_messages(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "mcp_ci_tools"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**_env(tmp_path), "PYTHONUNBUFFERED": "1"},
        text=True,
    )
    messages = [
        INITIALIZE,
        INITIALIZED,
        {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
        {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "rerun_job", "arguments": {}}},
        {
            "jsonrpc": "2.0",
            "id": 4,
            "method": "tools/call",
            "params": {"name": "rerun_job", "arguments": {"project_id": "x", "job_id": "y"}},
        },
    ]
    assert process.stdin and process.stdout and process.stderr
    for message in messages:
        process.stdin.write(json.dumps(message) + "\n")
    process.stdin.flush()
    lines: list[str] = []
    while not any('"id":4' in line.replace(" ", "") for line in lines):
        line = process.stdout.readline()
        assert line, "server closed stdout early: " + process.stderr.read()
        lines.append(line)
    process.stdin.close()
    lines += process.stdout.readlines()
    process.wait(timeout=10)
    process.stdout.close()
    process.stderr.close()

    parsed = [json.loads(line) for line in lines if line.strip()]
    assert all(message["jsonrpc"] == "2.0" for message in parsed)
    assert {message.get("id") for message in parsed} == {1, 2, 3, 4}


@pytest.mark.parametrize(
    ("drop", "extra", "variable"),
    [
        ("INFRABOX_URL", {}, "INFRABOX_URL"),
        ("INFRABOX_MCP_TOKEN", {}, "INFRABOX_MCP_TOKEN"),
        (None, {"MCP_CI_ALLOW_TRIGGER": "perhaps"}, "MCP_CI_ALLOW_TRIGGER"),
        (None, {"MCP_CI_TIMEOUT": "soon"}, "MCP_CI_TIMEOUT"),
        (None, {"MCP_CI_TRANSPORT": "streamable-http"}, "INFRABOX_MCP_TOKEN"),
    ],
)
def test_bad_configuration_exits_2_with_one_line_naming_the_variable(tmp_path, drop, extra, variable) -> None:
    env = _env(tmp_path, **extra)
    if drop:
        del env[drop]

    done = subprocess.run(
        [COMMAND], env=env, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL
    )

    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and variable in lines[0]
    assert TOKEN not in done.stderr
