"""Arguments refused completely: an unknown or ill-typed argument sends nothing, says how to call, and is audited."""

from __future__ import annotations

from typing import Any

import pytest
import respx

from tests.conftest import JOB_ID, PROJECT_ID, ListSink, text_of

pytestmark = pytest.mark.anyio

LOG_ARGS = {"project_id": PROJECT_ID, "job_id": JOB_ID}


async def test_an_unknown_argument_is_refused_naming_the_ones_the_tool_takes(
    make_server, connect, infrabox: respx.MockRouter, audit: ListSink
) -> None:
    log = infrabox.get(f"/projects/{PROJECT_ID}/jobs/{JOB_ID}/log").respond(200, json="line\n")
    client = await connect(make_server())

    result = await client.call_tool("get_job_log", {**LOG_ARGS, "pattern": "FAIL"})

    assert result.is_error
    assert text_of(result) == (
        "Error executing tool get_job_log: pattern: not an argument of get_job_log; it takes byte_offset, grep, job_id, "
        "max_bytes, project_id, tail_lines. Nothing was sent to InfraBox; check the value and call again."
    )
    assert not log.called
    [record] = audit.records
    assert record["tool"] == "get_job_log"
    assert (record["decision"], record["outcome"], record["reason"]) == ("denied", "denied", "invalid_input")
    assert (record["project_id"], record["job_id"]) == (PROJECT_ID, JOB_ID)


@pytest.mark.parametrize(
    ("tool", "arguments", "suggestion"),
    [
        ("get_job_log", {**LOG_ARGS, "tail_line": 5}, "did you mean 'tail_lines'?"),
        ("list_builds", {"project_id": PROJECT_ID, "branches": "main"}, "did you mean 'branch'?"),
    ],
)
async def test_a_misspelt_argument_gets_the_likely_name(
    tool: str, arguments: dict[str, Any], suggestion: str, make_server, connect, infrabox
) -> None:
    client = await connect(make_server())

    result = await client.call_tool(tool, arguments)

    assert result.is_error
    assert suggestion in text_of(result)


async def test_an_unknown_argument_does_not_restart_the_job(make_server, connect, infrabox, audit) -> None:
    restart = infrabox.post(f"/projects/{PROJECT_ID}/jobs/{JOB_ID}/restart").respond(200, json={})
    client = await connect(make_server())

    refused = await client.call_tool("restart_job", {**LOG_ARGS, "force": True})
    whoami = await client.call_tool("whoami", {})

    assert refused.is_error
    assert "force: not an argument of restart_job; it takes dry_run, job_id, project_id" in text_of(refused)
    assert not restart.called
    assert whoami.structured_content is not None
    assert whoami.structured_content["trigger_budget"]["remaining"] == 5
    assert [r["reason"] for r in audit.records if r["tool"] == "restart_job"] == ["invalid_input"]


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ({"project_id": 5, "job_id": JOB_ID}, "project_id: input should be a valid string; got 5."),
        ({**LOG_ARGS, "tail_lines": "many"}, "tail_lines: input should be a valid integer"),
        ({"project_id": PROJECT_ID}, "job_id: field required."),
    ],
)
async def test_an_ill_typed_or_missing_argument_is_refused_and_audited(
    arguments: dict[str, Any], expected: str, make_server, connect, infrabox, audit
) -> None:
    client = await connect(make_server())

    result = await client.call_tool("get_job_log", arguments)

    assert result.is_error
    assert expected in text_of(result)
    assert "Nothing was sent to InfraBox" in text_of(result)
    assert [r["reason"] for r in audit.records] == ["invalid_input"]


async def test_every_tool_refuses_an_argument_it_does_not_take(make_server, connect, infrabox, audit) -> None:
    client = await connect(make_server())
    tools = (await client.list_tools()).tools

    for tool in tools:
        arguments = {name: PROJECT_ID for name in tool.input_schema.get("required", [])}
        result = await client.call_tool(tool.name, {**arguments, "unexpected": True})
        assert result.is_error, tool.name
        assert "unexpected: not an argument of" in text_of(result), tool.name

    assert [r["tool"] for r in audit.records] == [t.name for t in tools]
    assert not infrabox.calls
