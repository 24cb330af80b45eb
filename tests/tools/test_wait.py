"""wait_for_build: progress, final state, red summary, timeout, budget pacing, cancellation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from mcp import Client

from mcp_ci_tools.domain.timestamps import rfc3339
from mcp_ci_tools.server import build_server
from tests.conftest import BUILD_ID, PROJECT_ID, FakeClock, ListSink, make_settings

pytestmark = pytest.mark.anyio

P = f"/projects/{PROJECT_ID}"
ARGS = {"project_id": PROJECT_ID, "build_id": BUILD_ID}


def server(tmp_path: Path, clock: FakeClock, sleeps: list[float], **overrides: Any):
    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        clock.advance(seconds)

    return build_server(make_settings(tmp_path, **overrides), clock=clock, sleep=sleep, audit_sink=ListSink())


def jobs(*states: str) -> list[dict[str, Any]]:
    names = ["build", "test", "deploy"]
    return [
        {
            "id": f"aaaaaaaa-0000-4000-8000-00000000000{n}",
            "name": names[n],
            "state": state,
            "build_id": BUILD_ID,
        }
        for n, state in enumerate(states)
    ]


def build(status: str) -> dict[str, Any]:
    return {"id": BUILD_ID, "build_number": 42, "restart_counter": 2, "status": status, "branch": "main"}


async def test_it_reports_progress_and_returns_the_final_state(tmp_path, clock, infrabox, mode):
    infrabox.get(f"{P}/builds/{BUILD_ID}").mock(
        side_effect=[httpx.Response(200, json=build(s)) for s in ("running", "running", "finished")]
    )
    infrabox.get(f"{P}/builds/{BUILD_ID}/jobs").mock(
        side_effect=[
            httpx.Response(200, json=jobs("finished", "running", "queued")),
            httpx.Response(200, json=jobs("finished", "finished", "running")),
            httpx.Response(200, json=jobs("finished", "finished", "finished")),
        ]
    )
    events: list[tuple[float, float | None, str | None]] = []

    async def progress(progress: float, total: float | None, message: str | None) -> None:
        events.append((progress, total, message))

    sleeps: list[float] = []
    async with Client(server(tmp_path, clock, sleeps), mode=mode) as client:
        result = await client.call_tool("wait_for_build", ARGS, progress_callback=progress)

    content = result.structured_content
    assert (content["ended"], content["timed_out"], content["polls"]) == (True, False, 3)
    assert content["state_counts"] == {"finished": 3}
    assert content["summary"] is None
    assert [(done, total) for done, total, _ in events] == [(1, 3), (2, 3), (3, 3)]
    assert events[-1][2] == "3 of 3 jobs ended; build finished"
    assert sleeps == [4.0, 6.0]
    assert content["waited_s"] == 10.0


async def test_a_red_build_comes_back_with_the_diagnosis_summary(tmp_path, clock, infrabox, mode):
    infrabox.get(f"{P}/builds/{BUILD_ID}").respond(200, json=build("failure"))
    infrabox.get(f"{P}/builds/{BUILD_ID}/jobs").respond(200, json=jobs("finished", "failure", "skipped"))
    async with Client(server(tmp_path, clock, []), mode=mode) as client:
        content = (await client.call_tool("wait_for_build", ARGS)).structured_content

    assert content["ended"] is True
    assert content["summary"].startswith("Build #42 on main is failure")
    assert "Start with 'test'" in content["summary"]


async def test_polling_is_paced_to_the_read_budget(tmp_path, clock, infrabox):
    infrabox.get(f"{P}/builds/{BUILD_ID}").respond(200, json=build("running"))
    infrabox.get(f"{P}/builds/{BUILD_ID}/jobs").respond(200, json=jobs("running"))
    sleeps: list[float] = []
    async with Client(server(tmp_path, clock, sleeps, read_per_minute=6, max_wait=300)) as client:
        content = (await client.call_tool("wait_for_build", {**ARGS, "timeout_s": 300})).structured_content

    assert content["timed_out"] is True and content["note"] is None
    assert min(sleeps) >= 20.0, "at most half of a 6-per-minute bucket goes to polling"


async def test_by_default_it_waits_45_s_and_returns_the_state_so_far_with_a_next_step(
    tmp_path, clock, infrabox
):
    running = {**build("running"), "created_at": rfc3339(clock() - 300)}
    infrabox.get(f"{P}/builds/{BUILD_ID}").respond(200, json=running)
    infrabox.get(f"{P}/builds/{BUILD_ID}/jobs").respond(200, json=jobs("finished", "running", "queued"))
    sleeps: list[float] = []
    async with Client(server(tmp_path, clock, sleeps)) as client:
        result = await client.call_tool("wait_for_build", ARGS)

    content = result.structured_content
    assert result.is_error is False
    assert (content["ended"], content["timed_out"]) == (False, True)
    assert content["waited_s"] == 45.0
    assert sum(sleeps) == 45.0 and max(sleeps) <= 15.0
    assert content["state_counts"] == {"finished": 1, "queued": 1, "running": 1}
    assert content["running_s"] == 345.0  # created 300 s before the call, which waited 45 s
    assert content["failed_jobs"] == [] and content["summary"] is None
    assert content["next_step"].startswith(
        "The build is still running (1 of 3 jobs ended). Call wait_for_build"
    )
    assert "up to 55 s a call" in content["next_step"]
    assert content["note"] is None


@pytest.mark.parametrize(
    ("asked", "max_wait", "applied", "says"),
    [
        (99_999, 55, 55, "timeout_s 99999 was clamped to 55 (the server's limit, MCP_CI_MAX_WAIT)."),
        (600, 1800, 600, None),  # an operator whose clients allow long calls raised the limit
        (0, 55, 1, "timeout_s 0 was clamped to 1."),
    ],
)
async def test_the_timeout_is_clamped_to_the_operators_limit_and_says_so(
    tmp_path, clock, infrabox, asked, max_wait, applied, says
):
    infrabox.get(f"{P}/builds/{BUILD_ID}").respond(200, json=build("running"))
    infrabox.get(f"{P}/builds/{BUILD_ID}/jobs").respond(200, json=jobs("running"))
    async with Client(server(tmp_path, clock, [], max_wait=max_wait, read_per_minute=1000)) as client:
        content = (await client.call_tool("wait_for_build", {**ARGS, "timeout_s": asked})).structured_content

    assert content["waited_s"] == applied
    assert content["note"] == says


async def test_a_red_build_lists_each_failed_job_with_its_id_and_actions(tmp_path, clock, infrabox):
    infrabox.get(f"{P}/builds/{BUILD_ID}").respond(200, json=build("failure"))
    infrabox.get(f"{P}/builds/{BUILD_ID}/jobs").respond(
        200,
        json=[
            {**job, "dependencies": [], "type": "run_project_container", "restarted": False}
            for job in jobs("finished", "failure", "error")
        ],
    )
    async with Client(server(tmp_path, clock, [])) as client:
        content = (await client.call_tool("wait_for_build", ARGS)).structured_content

    failed = content["failed_jobs"]
    assert [(j["id"], j["name"], j["state"]) for j in failed] == [
        ("aaaaaaaa-0000-4000-8000-000000000001", "test", "failure"),
        ("aaaaaaaa-0000-4000-8000-000000000002", "deploy", "error"),
    ]
    assert [j["actions"]["rerun"] for j in failed] == ["yes", "yes"]
    assert "rerun_job" in content["next_step"] and "failed_jobs" in content["next_step"]


async def test_a_green_build_has_no_next_step(tmp_path, clock, infrabox):
    infrabox.get(f"{P}/builds/{BUILD_ID}").respond(200, json=build("finished"))
    infrabox.get(f"{P}/builds/{BUILD_ID}/jobs").respond(200, json=jobs("finished", "finished"))
    async with Client(server(tmp_path, clock, [])) as client:
        content = (await client.call_tool("wait_for_build", ARGS)).structured_content

    assert (content["ended"], content["failed_jobs"], content["next_step"]) == (True, [], None)


async def test_it_stops_when_the_read_budget_runs_out(tmp_path, clock, infrabox):
    builds = infrabox.get(f"{P}/builds/{BUILD_ID}").respond(200, json=build("running"))
    infrabox.get(f"{P}/builds/{BUILD_ID}/jobs").respond(200, json=jobs("running"))
    async with Client(server(tmp_path, clock, [], read_per_minute=3)) as client:
        for _ in range(2):
            await client.call_tool("get_build", ARGS)  # other reads of the agent's
        content = (await client.call_tool("wait_for_build", {**ARGS, "timeout_s": 55})).structured_content

    assert builds.call_count == 3
    assert content["polls"] == 1
    assert (content["ended"], content["timed_out"]) == (False, False)
    assert "read budget is used up" in content["note"]


async def test_it_honours_cancellation(tmp_path, clock, infrabox):
    infrabox.get(f"{P}/builds/{BUILD_ID}").respond(200, json=build("running"))
    infrabox.get(f"{P}/builds/{BUILD_ID}/jobs").respond(200, json=jobs("running"))
    slept = anyio.Event()

    async def sleep_forever(seconds: float) -> None:
        slept.set()
        await anyio.sleep_forever()

    mcp = build_server(make_settings(tmp_path), clock=clock, sleep=sleep_forever, audit_sink=ListSink())
    async with Client(mcp) as client, anyio.create_task_group() as group:
        group.start_soon(client.call_tool, "wait_for_build", ARGS)
        await slept.wait()
        group.cancel_scope.cancel()

    assert slept.is_set()
