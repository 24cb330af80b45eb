"""`dry_run: true` on the trigger tools, and confirmations bound to what the user saw.

A dry run runs every check as a preview and reads the target: nothing is sent, no budget slot is taken,
and what it says agrees with what the real call then does. A confirmation holds only for the target the
user was shown: if it changed, nothing is sent (or, on 2026-07-28, the user is asked again).
"""

from __future__ import annotations

from typing import Any, Literal

import httpx
import pytest
import respx
from mcp import Client
from mcp.types import ElicitResult

from tests.conftest import BUILD_ID, JOB_ID, NEW_ID, PROJECT_ID, text_of

pytestmark = pytest.mark.anyio

P = f"/projects/{PROJECT_ID}"
BUILD_ARGS = {"project_id": PROJECT_ID, "build_id": BUILD_ID}
JOB_ARGS = {"project_id": PROJECT_ID, "job_id": JOB_ID}


def build_body(status: str = "failure", restart_counter: int = 2) -> dict[str, Any]:
    return {
        "id": BUILD_ID,
        "build_number": 123,
        "restart_counter": restart_counter,
        "project_id": PROJECT_ID,
        "branch": "main",
        "status": status,
    }


def jobs_body(count: int = 4) -> list[dict[str, Any]]:
    return [
        {
            "id": f"{n}e8d7c6b-5a4f-4e3d-8c2b-1a0f9e8d7c6b",
            "name": f"job-{n}",
            "state": "failure",
            "build_id": BUILD_ID,
        }
        for n in range(1, count + 1)
    ]


def job_body(state: str = "failure") -> dict[str, Any]:
    return {"id": JOB_ID, "name": "test", "state": state, "build_id": BUILD_ID, "project_id": PROJECT_ID}


def target_reads(infrabox: respx.MockRouter, *, status: str = "failure", job_state: str = "failure") -> None:
    infrabox.get(f"{P}/builds/{BUILD_ID}").respond(200, json=build_body(status))
    infrabox.get(f"{P}/builds/{BUILD_ID}/jobs").respond(200, json=jobs_body())
    infrabox.get(f"{P}/jobs/{JOB_ID}").respond(200, json=job_body(job_state))


WRITES = {
    "restart_build": (
        "POST",
        f"{P}/builds/{BUILD_ID}/restart",
        BUILD_ARGS,
        {"build_id": NEW_ID, "restart_counter": 3},
    ),
    "abort_build": ("DELETE", f"{P}/builds/{BUILD_ID}/abort", BUILD_ARGS, {"jobs_aborted": 4}),
    "restart_job": ("POST", f"{P}/jobs/{JOB_ID}/restart", JOB_ARGS, {"jobs_restarted": 2}),
    "rerun_job": ("POST", f"{P}/jobs/{JOB_ID}/rerun", JOB_ARGS, {"new_job_id": NEW_ID}),
    "abort_job": ("DELETE", f"{P}/jobs/{JOB_ID}/abort", JOB_ARGS, {}),
}


def write_route(infrabox: respx.MockRouter, tool: str) -> respx.Route:
    method, path, _, body = WRITES[tool]
    return infrabox.route(method=method, path=path).respond(200, json=body)


async def budget_left(client: Client) -> int:
    whoami = await client.call_tool("whoami", {})
    assert whoami.structured_content is not None
    remaining: int = whoami.structured_content["trigger_budget"]["remaining"]
    return remaining


@pytest.mark.parametrize("tool", list(WRITES))
async def test_a_dry_run_sends_nothing_takes_no_slot_and_shows_the_request_and_the_target(
    tool: str, make_server, connect, infrabox, audit
) -> None:
    write = write_route(infrabox, tool)
    target_reads(infrabox)
    client = await connect(make_server())
    method, path, args, _ = WRITES[tool]

    result = await client.call_tool(tool, {**args, "dry_run": True})

    assert not result.is_error, text_of(result)
    assert not write.called
    assert await budget_left(client) == 5
    out = result.structured_content
    assert out is not None
    assert out["dry_run"]["would_send"] is True and out["dry_run"]["refused_by"] is None
    assert out["dry_run"]["preview"].startswith(f"would send {method} /api/v1/mcp{path}; target now: ")
    assert out["next_step"].startswith(f"Dry run: every check passes. Call {tool} again without dry_run")
    assert out["trigger_budget"]["remaining"] == 5 and out["replayed"] is False
    [record] = [r for r in audit.records if r["tool"] == tool]
    assert (record["decision"], record["outcome"], record["detail"]) == (
        "allowed",
        "dry_run",
        {"dry_run": True, "would_send": True},
    )
    assert record["request_id"] == out["request_id"]


async def test_a_build_dry_run_says_what_the_restart_makes(make_server, connect, infrabox) -> None:
    target_reads(infrabox)
    client = await connect(make_server())

    result = await client.call_tool("restart_build", {**BUILD_ARGS, "dry_run": True})

    assert result.structured_content is not None
    assert result.structured_content["dry_run"]["preview"].endswith(
        "target now: build #123 of branch main, status failure, restart counter 2, 4 jobs; a restart makes "
        "build #123 restart counter 3"
    )
    assert (result.structured_content["new_build_id"], result.structured_content["restart_counter"]) == (
        None,
        None,
    )


async def test_a_job_dry_run_says_what_the_rerun_clones(make_server, connect, infrabox) -> None:
    target_reads(infrabox)
    client = await connect(make_server())

    result = await client.call_tool("rerun_job", {**JOB_ARGS, "dry_run": True})

    assert result.structured_content is not None
    assert result.structured_content["dry_run"]["preview"].endswith(
        "target now: job test, state failure; a rerun clones only it (as test.1)"
    )


def _refusal_of(result: Any) -> str:
    assert result.structured_content is not None, text_of(result)
    dry: dict[str, Any] = result.structured_content["dry_run"]
    assert dry["would_send"] is False
    return str(dry["refused_by"])


@pytest.mark.parametrize(
    ("case", "check"),
    [
        ("no_permission", "permission"),
        ("project_not_allowed", "project"),
        ("budget_used_up", "budget"),
        ("restart_loop", "loop"),
        ("identical_call_just_sent", "duplicate"),
    ],
)
async def test_a_dry_run_names_the_check_that_refuses_and_the_real_call_gives_the_same_refusal(
    case: str, check: str, make_server, connect, infrabox, audit, clock
) -> None:
    target_reads(infrabox)
    write = write_route(infrabox, "rerun_job")
    other_job = "7e8d7c6b-5a4f-4e3d-8c2b-1a0f9e8d7c6b"
    infrabox.post(f"{P}/jobs/{other_job}/rerun").respond(200, json={"new_job_id": NEW_ID})
    settings_of: dict[str, dict[str, Any]] = {
        "no_permission": {"allow_trigger": False},
        "project_not_allowed": {"projects": ("a1000000-0000-4000-8000-000000000001",)},
        "budget_used_up": {"trigger_per_minute": 1},
        "restart_loop": {"max_restarts_per_build": 1},
        "identical_call_just_sent": {},
    }
    settings = settings_of[case]
    client = await connect(make_server(**settings))
    if case == "budget_used_up":
        await client.call_tool("rerun_job", {"project_id": PROJECT_ID, "job_id": other_job})
    if case in ("restart_loop", "identical_call_just_sent"):
        await client.call_tool("rerun_job", JOB_ARGS)
    if case == "restart_loop":
        clock.advance(300)  # past the duplicate guard's window, well within the restart-loop guard's
    sent_before = write.call_count

    dry = await client.call_tool("rerun_job", {**JOB_ARGS, "dry_run": True})
    real = await client.call_tool("rerun_job", JOB_ARGS)

    assert _refusal_of(dry) == check
    assert dry.structured_content is not None
    refusal = dry.structured_content["next_step"].removeprefix(
        f"Dry run: the real call would be refused by the {check} check: "
    )
    if case == "identical_call_just_sent":  # the real call is answered with the first call's result
        assert real.structured_content is not None and real.structured_content["replayed"] is True
        assert refusal.startswith(
            "an identical rerun was sent 0 s ago and succeeded: the real call would not"
        )
    else:
        assert real.is_error and text_of(real) == f"Error executing tool rerun_job: {refusal}"
    assert write.call_count == sent_before  # neither the dry run nor the refused call sent anything
    dry_record = next(r for r in audit.records if r.get("outcome") == "dry_run")
    assert dry_record["decision"] == "denied" and dry_record["detail"]["refused_by"] == check


async def test_a_dry_run_with_a_bad_id_says_so_and_reads_nothing(make_server, connect, infrabox) -> None:
    client = await connect(make_server())

    result = await client.call_tool(
        "abort_job", {"project_id": PROJECT_ID, "job_id": "../../x", "dry_run": True}
    )

    assert _refusal_of(result) == "id"
    assert result.structured_content is not None
    assert result.structured_content["dry_run"]["preview"] == (
        "would send nothing (an id is not valid); target now: not read (the call is refused before it)"
    )
    assert "job_id must be a UUID" in result.structured_content["next_step"]
    assert not infrabox.calls


async def test_a_target_that_cannot_be_read_is_said_and_the_dry_run_still_answers(
    make_server, connect, infrabox
) -> None:
    infrabox.get(f"{P}/jobs/{JOB_ID}").respond(404, text="not found")
    client = await connect(make_server())

    result = await client.call_tool("abort_job", {**JOB_ARGS, "dry_run": True})

    assert result.structured_content is not None
    assert "target now: could not be read: " in result.structured_content["dry_run"]["preview"]
    assert "not found" in result.structured_content["dry_run"]["preview"]


async def test_a_dry_run_of_a_confirmed_tool_asks_nobody_and_says_the_user_would_be_asked(
    make_server, infrabox
) -> None:
    target_reads(infrabox)
    asked: list[str] = []

    async def on_elicit(context: Any, params: Any) -> ElicitResult:
        asked.append(params.message)
        return ElicitResult(action="accept", content={"confirm": True})

    async with Client(make_server(confirm=("abort_job",)), elicitation_callback=on_elicit) as client:
        result = await client.call_tool("abort_job", {**JOB_ARGS, "dry_run": True})

    assert asked == []
    assert result.structured_content is not None
    assert result.structured_content["dry_run"]["preview"].endswith(
        "; MCP_CI_CONFIRM would ask the user first"
    )


# Confirmation bound to what the user saw -----------------------------------------------------------------


class ChangingBuild:
    """GET build answers as it was until `flip()` (or after `flip_after_reads` answers), then as changed."""

    def __init__(self, infrabox: respx.MockRouter, *, flip_after_reads: int | None = None) -> None:
        self.status, self.counter = "failure", 2
        self.reads = 0
        self._flip_after = flip_after_reads
        infrabox.get(f"{P}/builds/{BUILD_ID}").mock(side_effect=self._answer)
        infrabox.get(f"{P}/builds/{BUILD_ID}/jobs").respond(200, json=jobs_body())

    def _answer(self, request: httpx.Request) -> httpx.Response:
        if self._flip_after is not None and self.reads >= self._flip_after:
            self.flip()
        self.reads += 1
        return httpx.Response(200, json=build_body(self.status, self.counter))

    def flip(self) -> None:
        self.status, self.counter = "running", 3  # someone else restarted it meanwhile


def answering(asked: list[str], build: ChangingBuild, *, flip_on_question: int | None) -> Any:
    async def on_elicit(context: Any, params: Any) -> ElicitResult:
        asked.append(params.message)
        if len(asked) == flip_on_question:
            build.flip()
        return ElicitResult(action="accept", content={"confirm": True})

    return on_elicit


async def test_legacy_a_target_that_changed_while_the_user_answered_is_not_sent(
    make_server, infrabox, audit
) -> None:
    build = ChangingBuild(infrabox)
    restart = write_route(infrabox, "restart_build")
    asked: list[str] = []
    server = make_server(confirm=("restart_build",))
    callback = answering(asked, build, flip_on_question=1)

    async with Client(server, mode="legacy", elicitation_callback=callback) as client:
        result = await client.call_tool("restart_build", BUILD_ARGS)
        left = await budget_left(client)

    assert len(asked) == 1 and "Now: build #123 of branch main, status failure, restart counter 2" in asked[0]
    assert result.is_error and not restart.called
    assert text_of(result).startswith(
        f"Error executing tool restart_build: Not sent: the build {BUILD_ID} changed after the user confirmed the restart. The user saw build #123 "
        "of branch main, status failure, restart counter 2"
    )
    assert "it is now build #123 of branch main, status running, restart counter 3" in text_of(result)
    assert left == 5  # refused before the budget: no slot taken
    [record] = [r for r in audit.records if r["tool"] == "restart_build"]
    assert (record["reason"], record["confirmation"]) == ("target_changed", "elicited")


async def test_2026_a_question_the_target_changed_under_is_asked_again_with_what_is_now_true(
    make_server, infrabox, audit
) -> None:
    build = ChangingBuild(infrabox)
    restart = write_route(infrabox, "restart_build")
    asked: list[str] = []
    server = make_server(confirm=("restart_build",))
    callback = answering(asked, build, flip_on_question=1)

    async with Client(server, mode="2026-07-28", elicitation_callback=callback) as client:
        result = await client.call_tool("restart_build", BUILD_ARGS)

    assert len(asked) == 2, asked  # the answer to the first question no longer describes the build
    assert "status failure, restart counter 2" in asked[0]
    assert "status running, restart counter 3" in asked[1]
    assert not result.is_error and restart.call_count == 1  # sent once, after the user saw the build as it is


async def test_a_target_that_changes_after_the_last_question_is_not_sent(
    make_server, infrabox, audit, mode: Literal["auto", "legacy"]
) -> None:
    # Legacy: one look for the question, then the check before the send. 2026-07-28: a look on the round
    # that asks and one on the round that carries the answer, then the check. The check sees a change.
    build = ChangingBuild(infrabox, flip_after_reads=1 if mode == "legacy" else 2)
    restart = write_route(infrabox, "restart_build")
    asked: list[str] = []
    callback = answering(asked, build, flip_on_question=None)

    async with Client(
        make_server(confirm=("restart_build",)), mode=mode, elicitation_callback=callback
    ) as client:
        result = await client.call_tool("restart_build", BUILD_ARGS)

    assert len(asked) == 1
    assert result.is_error and not restart.called
    assert "changed after the user confirmed the restart" in text_of(result)
    assert build.reads == (2 if mode == "legacy" else 3)


async def test_2026_a_target_that_cannot_be_read_is_asked_about_once(make_server, infrabox, audit) -> None:
    # Each look fails with a new request id; the question must still read the same on the answering round.
    infrabox.get(f"{P}/jobs/{JOB_ID}").respond(500, json={"message": "database is down"})
    abort = write_route(infrabox, "abort_job")
    asked: list[str] = []

    async def accept(context: Any, params: Any) -> ElicitResult:
        asked.append(params.message)
        return ElicitResult(action="accept", content={"confirm": True})

    server = make_server(confirm=("abort_job",))
    async with Client(server, mode="2026-07-28", elicitation_callback=accept) as client:
        result = await client.call_tool("abort_job", JOB_ARGS)

    assert len(asked) == 1, asked
    assert "its current state could not be read" in asked[0] and "request id" not in asked[0]
    assert not result.is_error, text_of(result)
    assert abort.call_count == 1
