"""At start-up the audit file is checked and its torn tail repaired: the real command over stdio."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

from tests.conftest import BUILD_ID, PROJECT_ID, text_of
from tests.e2e.test_stdio import COMMAND, _env

pytestmark = pytest.mark.anyio

TORN = b'{"ts":"2027-01-15T08:00:00.000Z","token":"sha256:0123456789ab","event":"result","tool":"restart_jo'


async def test_a_torn_tail_is_repaired_at_start_up_before_any_call(tmp_path: Path) -> None:
    audit = tmp_path / "audit.jsonl"
    audit.write_bytes(b'{"ts":"2027-01-15T08:00:00.000Z","event":"attempt"}\n' + TORN)
    audit.chmod(0o600)
    params = StdioServerParameters(command=COMMAND, args=[], env=_env(tmp_path))
    with open(tmp_path / "stderr.log", "w") as errlog:
        async with Client(stdio_client(params, errlog=errlog)) as client:
            await client.list_tools()  # started; no tool called, nothing else written
            lines = [json.loads(line) for line in audit.read_text().splitlines()]

    assert [line["event"] for line in lines] == ["attempt", "torn"]
    assert lines[1]["bytes"] == len(TORN)
    assert base64.b64decode(lines[1]["fragment_b64"]) == TORN
    assert (tmp_path / "audit.jsonl.torn").exists()
    stderr = (tmp_path / "stderr.log").read_text()
    assert f"audit log {audit} ended in a torn line: {len(TORN)} byte(s) kept in {audit}.torn" in stderr


async def test_an_audit_file_that_cannot_be_trusted_is_one_warning_line_and_triggers_refuse(
    tmp_path: Path,
) -> None:
    target = tmp_path / "elsewhere.jsonl"
    target.write_text("")
    (tmp_path / "audit.jsonl").symlink_to(target)
    env = _env(tmp_path, MCP_CI_ALLOW_TRIGGER="true")
    params = StdioServerParameters(command=COMMAND, args=[], env=env)
    with open(tmp_path / "stderr.log", "w") as errlog:
        async with Client(stdio_client(params, errlog=errlog)) as client:
            refused = await client.call_tool(
                "restart_build", {"project_id": PROJECT_ID, "build_id": BUILD_ID}
            )

    stderr = (tmp_path / "stderr.log").read_text().splitlines()
    warnings = [line for line in stderr if "WARNING" in line and "audit log unusable" in line]
    assert len(warnings) == 1, stderr
    assert f"(MCP_CI_AUDIT_LOG={tmp_path / 'audit.jsonl'})" in warnings[0]
    assert "symbolic link" in warnings[0] and "trigger tools refuse until it is fixed" in warnings[0]
    assert not any("Traceback" in line for line in stderr)
    assert any("serving MCP over stdio" in line for line in stderr)  # it started anyway
    assert refused.is_error and "audit" in text_of(refused).lower()
    assert target.read_text() == ""
