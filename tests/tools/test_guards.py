"""Guardrails over the SDK client: toolsets, project allow-list, restart-loop and duplicate guards, confirmation."""

from __future__ import annotations

from typing import Any, Literal

import anyio
import httpx
import pytest
from mcp import Client
from mcp.types import ElicitResult

from tests.conftest import BUILD_ID, JOB_ID, NEW_ID, PROJECT_ID, text_of

pytestmark = pytest.mark.anyio

OTHER_PROJECT = "0f0f0f0f-0000-4000-8000-000000000000"
P = f"/projects/{PROJECT_ID}"
TRIGGER_TOOLS = {"restart_build", "abort_build", "restart_job", "rerun_job", "abort_job"}
BUILD_ARGS = {"project_id": PROJECT_ID, "build_id": BUILD_ID}
JOB_ARGS = {"project_id": PROJECT_ID, "job_id": JOB_ID}


def build_body(build_id: str = BUILD_ID, number: int = 42) -> dict[str, Any]:
    return {
        "id": build_id,
        "build_number": number,
        "restart_counter": 1,
        "project_id": PROJECT_ID,
        "status": "failure",
    }


def job_body(job_id: str = JOB_ID, state: str = "failure") -> dict[str, Any]:
    return {"id": job_id, "name": "test", "state": state, "build_id": BUILD_ID, "project_id": PROJECT_ID}


# Toolsets ---------------------------------------------------------------------------------------------------


async def test_read_only_toolset_leaves_trigger_tools_out_and_calling_one_sends_nothing(
    make_server, connect, infrabox
):
    client = await connect(make_server(toolsets=("read",)))

    names = {tool.name for tool in (await client.list_tools()).tools}
    result = await client.call_tool("restart_build", BUILD_ARGS)

    assert not names & TRIGGER_TOOLS
    assert {"diagnose_build", "get_build", "wait_for_build", "whoami"} <= names
    assert result.is_error and "Unknown tool" in text_of(result)
    assert not infrabox.calls


async def test_trigger_toolset_alone_serves_only_trigger_tools_and_whoami(make_server, connect):
    client = await connect(make_server(toolsets=("trigger",)))

    names = {tool.name for tool in (await client.list_tools()).tools}

    assert names == TRIGGER_TOOLS | {"whoami"}


async def test_trigger_tools_stay_listed_when_permission_is_declared_false(make_server, connect):
    client = await connect(make_server(allow_trigger=False))

    names = {tool.name for tool in (await client.list_tools()).tools}

    assert names >= TRIGGER_TOOLS


# Project allow-list ----------------------------------------------------------------------------------------


async def test_projects_outside_the_allow_list_are_refused_before_any_request(
    make_server, connect, infrabox, audit
):
    client = await connect(make_server(projects=(OTHER_PROJECT,)))

    trigger = await client.call_tool("restart_build", BUILD_ARGS)
    read = await client.call_tool("get_build", BUILD_ARGS)

    assert trigger.is_error and "outside this server's project allow-list (MCP_CI_PROJECTS)" in text_of(
        trigger
    )
    assert read.is_error and OTHER_PROJECT in text_of(read)
    assert not infrabox.calls
    assert [(r["tool"], r["reason"]) for r in audit.records] == [
        ("restart_build", "project_not_allowed"),
        ("get_build", "project_not_allowed"),
    ]


async def test_list_projects_shows_only_allowed_projects(make_server, connect, infrabox):
    infrabox.get("/projects").respond(
        200, json=[{"id": PROJECT_ID, "name": "payments"}, {"id": OTHER_PROJECT.upper(), "name": "infra"}]
    )
    client = await connect(make_server(projects=(OTHER_PROJECT,)))

    content = (await client.call_tool("list_projects", {})).structured_content

    assert [p["name"] for p in content["projects"]] == ["infra"]
    assert content["total"] == 1


# Restart-loop guard ---------------------------------------------------------------------------------------


def _lineage_routes(infrabox) -> dict[str, Any]:
    infrabox.get(f"{P}/builds/{BUILD_ID}").respond(200, json=build_body())
    infrabox.get(f"{P}/builds/{BUILD_ID}/jobs").respond(200, json=[job_body()])
    return {
        "restart_job": infrabox.post(f"{P}/jobs/{JOB_ID}/restart").respond(200, json={"jobs_restarted": 2}),
        "rerun_job": infrabox.post(f"{P}/jobs/{JOB_ID}/rerun").respond(200, json={"new_job_id": NEW_ID}),
        "restart_build": infrabox.post(f"{P}/builds/{BUILD_ID}/restart").respond(
            200, json={"build_id": NEW_ID, "restart_counter": 2}
        ),
        "restart_new_build": infrabox.post(f"{P}/builds/{NEW_ID}/restart").respond(
            200, json={"build_id": "22222222-2222-4222-8222-222222222222", "restart_counter": 3}
        ),
    }


async def test_the_fourth_restart_of_a_build_lineage_is_refused(make_server, connect, infrabox, audit, clock):
    routes = _lineage_routes(infrabox)
    client = await connect(make_server())
    await client.call_tool("get_build", BUILD_ARGS)  # teaches the server that the job belongs to build #42

    sent = [
        await client.call_tool("restart_job", JOB_ARGS),
        await client.call_tool("rerun_job", JOB_ARGS),
        await client.call_tool("restart_build", BUILD_ARGS),
    ]
    clock.advance(30)
    fourth = await client.call_tool("restart_build", {"project_id": PROJECT_ID, "build_id": NEW_ID})
    budget_after = (await client.call_tool("whoami", {})).structured_content["trigger_budget"]["remaining"]

    assert [r.is_error for r in sent] == [False, False, False]
    assert fourth.is_error is True
    text = text_of(fourth)
    assert "Restart-loop guard: 3 restart/rerun requests" in text
    assert "in the last 3600 s" in text and "diagnose_build" in text and "frees a slot in 3570 s" in text
    assert routes["restart_new_build"].call_count == 0
    assert budget_after == 2, "a refused call uses no budget"
    assert audit.records[-2]["reason"] == "restart_loop"


async def test_the_restart_window_slides(make_server, connect, infrabox, clock):
    routes = _lineage_routes(infrabox)
    client = await connect(make_server(restart_window=600, dedupe_seconds=0, max_restarts_per_build=1))
    await client.call_tool("get_build", BUILD_ARGS)

    first = await client.call_tool("restart_build", BUILD_ARGS)
    clock.advance(599)
    refused = await client.call_tool("restart_job", JOB_ARGS)
    clock.advance(2)
    later = await client.call_tool("restart_job", JOB_ARGS)

    assert (first.is_error, refused.is_error, later.is_error) == (False, True, False)
    assert routes["restart_job"].call_count == 1


async def test_without_lineage_the_guard_counts_per_id(make_server, connect, infrabox):
    route = infrabox.post(f"{P}/jobs/{JOB_ID}/rerun").respond(200, json={})
    other = infrabox.post(f"{P}/jobs/{NEW_ID}/rerun").respond(200, json={})
    client = await connect(make_server(dedupe_seconds=0, max_restarts_per_build=2))

    results = [await client.call_tool("rerun_job", JOB_ARGS) for _ in range(3)]
    unrelated = await client.call_tool("rerun_job", {"project_id": PROJECT_ID, "job_id": NEW_ID})

    assert [r.is_error for r in results] == [False, False, True]
    assert unrelated.is_error is False
    assert (route.call_count, other.call_count) == (2, 1)


async def test_aborts_are_not_counted_as_restarts(make_server, connect, infrabox):
    route = infrabox.delete(f"{P}/jobs/{JOB_ID}/abort").respond(200, json={})
    client = await connect(make_server(dedupe_seconds=0, max_restarts_per_build=1))

    results = [await client.call_tool("abort_job", JOB_ARGS) for _ in range(3)]

    assert not any(r.is_error for r in results)
    assert route.call_count == 3


# Duplicate guard ------------------------------------------------------------------------------------------


async def test_two_identical_concurrent_calls_send_one_request(make_server, connect, infrabox, audit):
    release, sent, second_done = anyio.Event(), anyio.Event(), anyio.Event()
    calls = 0

    async def slow(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        sent.set()
        await release.wait()
        return httpx.Response(200, json={"build_id": NEW_ID, "restart_counter": 2})

    infrabox.post(f"{P}/builds/{BUILD_ID}/restart").mock(side_effect=slow)
    client = await connect(make_server())
    results: dict[str, Any] = {}

    async def call(name: str) -> None:
        results[name] = await client.call_tool("restart_build", BUILD_ARGS)
        if name == "second":
            second_done.set()

    async with anyio.create_task_group() as group:
        group.start_soon(call, "first")
        await sent.wait()
        group.start_soon(call, "second")
        await second_done.wait()
        release.set()

    assert calls == 1
    assert results["first"].structured_content["new_build_id"] == NEW_ID
    assert results["second"].is_error is True
    assert "Not sent again" in text_of(results["second"]) and "get_build" in text_of(results["second"])
    assert [r["reason"] for r in audit.records if r["decision"] == "denied"] == ["deduplicated"]


async def test_an_identical_call_soon_after_repeats_the_first_answer_and_later_is_sent(
    make_server, connect, infrabox, clock
):
    route = infrabox.post(f"{P}/builds/{BUILD_ID}/restart").respond(
        200, json={"build_id": NEW_ID, "restart_counter": 2}
    )
    client = await connect(make_server())

    first = await client.call_tool("restart_build", BUILD_ARGS)
    clock.advance(10)
    again = await client.call_tool("restart_build", BUILD_ARGS)
    clock.advance(21)
    later = await client.call_tool("restart_build", BUILD_ARGS)

    assert route.call_count == 2
    assert again.is_error is False
    assert again.structured_content["replayed"] is True
    assert again.structured_content["new_build_id"] == NEW_ID
    assert again.structured_content["request_id"] == first.structured_content["request_id"]
    assert again.structured_content["next_step"].startswith(
        "NOT SENT AGAIN: an identical call was sent 10 s ago"
    )
    assert later.structured_content["replayed"] is False


async def test_an_identical_call_after_a_failure_repeats_the_failure(make_server, connect, infrabox):
    route = infrabox.post(f"{P}/jobs/{JOB_ID}/rerun").respond(
        400, json={"message": "parent job is still running"}
    )
    client = await connect(make_server())

    first = await client.call_tool("rerun_job", JOB_ARGS)
    again = await client.call_tool("rerun_job", JOB_ARGS)

    assert route.call_count == 1
    assert "parent job is still running" in text_of(first)
    assert "Not sent again" in text_of(again) and "parent job is still running" in text_of(again)


async def test_an_identical_call_after_an_unknown_outcome_says_to_check_the_state(
    make_server, connect, infrabox
):
    route = infrabox.post(f"{P}/builds/{BUILD_ID}/restart")
    route.side_effect = httpx.ReadTimeout("slow")
    client = await connect(make_server())

    first = await client.call_tool("restart_build", BUILD_ARGS)
    again = await client.call_tool("restart_build", BUILD_ARGS)

    assert route.call_count == 1
    assert "outcome is unknown" in text_of(first)
    assert "Not sent again" in text_of(again) and "outcome is not known" in text_of(again)


async def test_calls_refused_locally_are_not_remembered(make_server, connect, infrabox, clock):
    route = infrabox.delete(f"{P}/jobs/{JOB_ID}/abort").respond(200, json={})
    infrabox.delete(f"{P}/jobs/{NEW_ID}/abort").respond(200, json={})
    client = await connect(make_server(trigger_per_minute=1))

    await client.call_tool("abort_job", {"project_id": PROJECT_ID, "job_id": NEW_ID})
    refused = await client.call_tool("abort_job", JOB_ARGS)
    clock.advance(61)
    retried = await client.call_tool("abort_job", JOB_ARGS)

    assert "Trigger budget used up" in text_of(refused)
    assert retried.is_error is False and retried.structured_content["replayed"] is False
    assert route.call_count == 1


# Confirmation ---------------------------------------------------------------------------------------------


def _answering(
    action: Literal["accept", "decline", "cancel"], content: dict[str, Any] | None, asked: list[str]
):
    async def on_elicit(context: Any, params: Any) -> ElicitResult:
        asked.append(params.message)
        assert params.requested_schema["properties"] == {
            "confirm": {
                "description": "true to let the agent go ahead",
                "title": "Confirm",
                "type": "boolean",
            }
        }
        return ElicitResult(action=action, content=content)

    return on_elicit


@pytest.mark.parametrize(
    ("action", "content", "sent", "reason", "confirmation"),
    [
        ("accept", {"confirm": True}, 1, None, "elicited"),
        ("accept", {"confirm": False}, 0, "declined", "declined"),
        ("decline", None, 0, "declined", "declined"),
        ("cancel", None, 0, "declined", "cancelled"),
    ],
)
async def test_confirmation_asks_the_user_and_respects_the_answer(
    action, content, sent, reason, confirmation, mode, make_server, infrabox, audit
):
    route = infrabox.delete(f"{P}/jobs/{JOB_ID}/abort").respond(200, json={})
    infrabox.get(f"{P}/jobs/{JOB_ID}").respond(200, json=job_body(state="running"))
    asked: list[str] = []
    server = make_server(confirm=("abort_job",))
    async with Client(server, mode=mode, elicitation_callback=_answering(action, content, asked)) as client:
        result = await client.call_tool("abort_job", JOB_ARGS)

    assert len(asked) == 1
    assert "abort" in asked[0] and JOB_ID in asked[0] and PROJECT_ID in asked[0]
    assert "Now: job test, state running." in asked[0]  # the user sees the target as it is
    assert f"It would send DELETE /api/v1/mcp/projects/{PROJECT_ID}/jobs/{JOB_ID}/abort." in asked[0]
    assert route.call_count == sent
    assert result.is_error is (sent == 0)
    if reason:
        assert "did not confirm" in text_of(result)
        assert audit.records[-1]["reason"] == reason
    trigger_records = [record for record in audit.records if record["tool"] == "abort_job"]
    assert [record["confirmation"] for record in trigger_records] == [confirmation] * (1 + sent)


async def test_a_client_without_elicitation_gets_a_clear_error(mode, make_server, infrabox, audit):
    route = infrabox.delete(f"{P}/jobs/{JOB_ID}/abort").respond(200, json={})
    async with Client(make_server(confirm=("abort_job",)), mode=mode) as client:
        result = await client.call_tool("abort_job", JOB_ARGS)

    assert result.is_error and "MCP_CI_CONFIRM" in text_of(result) and "cannot ask" in text_of(result)
    assert route.call_count == 0
    assert audit.records[-1]["reason"] == "confirmation_unsupported"
    assert audit.records[-1]["confirmation"] == "unsupported"


async def test_nobody_is_asked_about_a_call_that_would_be_refused(mode, make_server, infrabox, audit):
    asked: list[str] = []
    server = make_server(confirm=("abort_job",), allow_trigger=False)
    async with Client(
        server, mode=mode, elicitation_callback=_answering("accept", {"confirm": True}, asked)
    ) as client:
        result = await client.call_tool("abort_job", JOB_ARGS)

    assert asked == []
    assert "no trigger permission" in text_of(result)
    assert audit.records[-1]["reason"] == "trigger_not_allowed"
    assert "confirmation" not in audit.records[-1]  # refused before anyone was asked


async def test_tools_not_listed_for_confirmation_are_not_asked_about(mode, make_server, infrabox, audit):
    route = infrabox.delete(f"{P}/jobs/{JOB_ID}/abort").respond(200, json={})
    asked: list[str] = []
    server = make_server(confirm=("abort_build",))
    async with Client(
        server, mode=mode, elicitation_callback=_answering("accept", {"confirm": True}, asked)
    ) as client:
        result = await client.call_tool("abort_job", JOB_ARGS)

    assert asked == [] and result.is_error is False and route.call_count == 1
    assert [record["confirmation"] for record in audit.records] == ["not_required", "not_required"]


# Defaults -------------------------------------------------------------------------------------------------


async def test_the_defaults_keep_earlier_behaviour(make_server, connect, infrabox):
    routes = {
        JOB_ID: infrabox.post(f"{P}/jobs/{JOB_ID}/rerun").respond(200, json={}),
        NEW_ID: infrabox.post(f"{P}/jobs/{NEW_ID}/rerun").respond(200, json={}),
    }
    infrabox.get("/projects").respond(200, json=[{"id": PROJECT_ID}, {"id": OTHER_PROJECT}])
    client = await connect(make_server())

    names = {tool.name for tool in (await client.list_tools()).tools}
    projects = (await client.call_tool("list_projects", {})).structured_content["projects"]
    reruns = [await client.call_tool("rerun_job", {"project_id": PROJECT_ID, "job_id": j}) for j in routes]
    third = await client.call_tool("rerun_job", {"project_id": PROJECT_ID, "job_id": JOB_ID})

    assert names >= TRIGGER_TOOLS | {"diagnose_build", "wait_for_build"}
    assert len(projects) == 2
    assert not any(r.is_error for r in reruns), "different calls are neither deduplicated nor loop-guarded"
    assert third.structured_content["replayed"] is True
    assert [r.call_count for r in routes.values()] == [1, 1]
