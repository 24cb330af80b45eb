"""The five trigger tools through an in-memory SDK client (both protocol modes), InfraBox mocked with respx."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import anyio
import httpx
import pytest
import respx

from tests.conftest import (
    BUILD_ID,
    JOB_ID,
    NEW_ID,
    PROJECT_ID,
    TOKEN,
    BrokenSink,
    text_of,
)

pytestmark = pytest.mark.anyio

FLASK_404 = (
    "The requested URL was not found on the server. If you entered the URL manually please check your "
    "spelling and try again."
)


@dataclass(frozen=True)
class Trigger:
    tool: str
    method: str
    path: str
    id_argument: str
    target_id: str
    body_621: dict[str, Any]

    def args(self, **overrides: str) -> dict[str, str]:
        return {"project_id": PROJECT_ID, self.id_argument: self.target_id, **overrides}

    def route(self, router: respx.MockRouter) -> respx.Route:
        return router.route(method=self.method, path=self.path.replace("/api/v1/mcp", ""))


def _path(kind: str, target: str, action: str) -> str:
    return f"/api/v1/mcp/projects/{PROJECT_ID}/{kind}/{target}/{action}"


TRIGGERS = {
    t.tool: t
    for t in [
        Trigger(
            "restart_build",
            "POST",
            _path("builds", BUILD_ID, "restart"),
            "build_id",
            BUILD_ID,
            {"build_id": NEW_ID, "restart_counter": 2},
        ),
        Trigger(
            "abort_build",
            "DELETE",
            _path("builds", BUILD_ID, "abort"),
            "build_id",
            BUILD_ID,
            {"message": "Aborted all jobs", "jobs_aborted": 4},
        ),
        Trigger(
            "restart_job",
            "POST",
            _path("jobs", JOB_ID, "restart"),
            "job_id",
            JOB_ID,
            {"message": "Successfully restarted job", "jobs_restarted": 3},
        ),
        Trigger(
            "rerun_job",
            "POST",
            _path("jobs", JOB_ID, "rerun"),
            "job_id",
            JOB_ID,
            {"message": "Successfully rerun job", "new_job_id": NEW_ID},
        ),
        Trigger(
            "abort_job",
            "DELETE",
            _path("jobs", JOB_ID, "abort"),
            "job_id",
            JOB_ID,
            {"message": "Successfully aborted job"},
        ),
    ]
}
ALL = pytest.mark.parametrize("trigger", TRIGGERS.values(), ids=TRIGGERS.keys())


# Requests and results -------------------------------------------------------------------------------


@ALL
async def test_each_tool_sends_its_contract_request_with_exact_headers(
    trigger, make_server, connect, infrabox, audit
):
    route = trigger.route(infrabox).respond(200, json=trigger.body_621)
    client = await connect(make_server())

    result = await client.call_tool(trigger.tool, trigger.args())

    assert result.is_error is False
    assert route.call_count == 1
    request = route.calls.last.request
    assert request.method == trigger.method
    assert request.url.path == trigger.path
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert request.headers["user-agent"] == "mcp-ci-tools/0.1.0"
    assert request.headers["x-request-id"] == "req-1"
    assert result.structured_content["request_id"] == "req-1"
    assert [r["request_id"] for r in audit.records] == ["req-1", "req-1"]
    assert result.structured_content["trigger_budget"] == {
        "limit": 5,
        "remaining": 4,
        "window_seconds": 60,
        "seconds_until_next_slot": 0,
    }


async def test_restart_build_reports_the_new_build_and_how_to_follow_it(make_server, connect, infrabox):
    trigger = TRIGGERS["restart_build"]
    trigger.route(infrabox).respond(200, json=trigger.body_621)
    client = await connect(make_server())

    result = await client.call_tool("restart_build", trigger.args())

    content = result.structured_content
    assert (content["new_build_id"], content["restart_counter"]) == (NEW_ID, 2)
    assert f"get_build(project_id, '{NEW_ID}')" in content["next_step"]


async def test_restart_build_without_a_new_id_says_where_to_find_it(make_server, connect, infrabox):
    TRIGGERS["restart_build"].route(infrabox).respond(200, json={"message": "ok"})
    client = await connect(make_server())

    result = await client.call_tool("restart_build", TRIGGERS["restart_build"].args())

    assert result.structured_content["new_build_id"] is None
    assert "list_builds" in result.structured_content["next_step"]


async def test_abort_build_reports_count_and_that_abort_is_asynchronous(
    make_server, connect, infrabox, audit
):
    trigger = TRIGGERS["abort_build"]
    trigger.route(infrabox).respond(200, json=trigger.body_621)
    client = await connect(make_server())

    content = (await client.call_tool("abort_build", trigger.args())).structured_content

    assert content["jobs_aborted"] == 4
    assert content["asynchronous"] is True
    assert "asynchronously" in content["next_step"]
    assert "infrabox_message" not in content  # InfraBox's text repeats the count; the audit keeps it
    assert audit.records[-1]["detail"] == {"jobs_aborted": 4, "message": "Aborted all jobs"}


@pytest.mark.parametrize(
    ("body", "count", "new_ids"),
    [
        ({"message": "Successfully restarted job", "jobs_restarted": 3}, 3, []),
        ({"job_id": NEW_ID, "cloned_count": 3, "status": "queued"}, 3, [NEW_ID]),
        ({"job_id": JOB_ID, "cloned_count": 2, "status": "queued"}, 2, []),
    ],
    ids=["621", "628", "628-echoing-the-original-id"],
)
async def test_restart_job_normalises_both_upstream_shapes(
    body, count, new_ids, make_server, connect, infrabox
):
    TRIGGERS["restart_job"].route(infrabox).respond(200, json=body)
    client = await connect(make_server())

    content = (await client.call_tool("restart_job", TRIGGERS["restart_job"].args())).structured_content

    assert content["jobs_restarted"] == count
    assert content["new_job_ids"] == new_ids
    assert "downstream" in content["next_step"] or "job(s)" in content["next_step"]


@pytest.mark.parametrize(
    "body",
    [
        {"message": "Successfully rerun job", "new_job_id": NEW_ID},
        {"job_id": NEW_ID, "cloned_count": 1, "status": "q"},
    ],
    ids=["621", "628"],
)
async def test_rerun_job_reports_the_new_job_id_from_either_shape(body, make_server, connect, infrabox):
    TRIGGERS["rerun_job"].route(infrabox).respond(200, json=body)
    client = await connect(make_server())

    content = (await client.call_tool("rerun_job", TRIGGERS["rerun_job"].args())).structured_content

    assert content["new_job_id"] == NEW_ID
    assert f"get_job(project_id, '{NEW_ID}')" in content["next_step"]
    assert "downstream jobs were not cloned" in content["next_step"]


async def test_abort_job_is_accepted_and_asynchronous(make_server, connect, infrabox):
    TRIGGERS["abort_job"].route(infrabox).respond(200, json=TRIGGERS["abort_job"].body_621)
    client = await connect(make_server())

    content = (await client.call_tool("abort_job", TRIGGERS["abort_job"].args())).structured_content

    assert (content["accepted"], content["asynchronous"]) == (True, True)


async def test_a_2xx_with_an_unreadable_body_is_still_a_success(make_server, connect, infrabox):
    TRIGGERS["restart_build"].route(infrabox).respond(202, text="accepted")
    client = await connect(make_server())

    result = await client.call_tool("restart_build", TRIGGERS["restart_build"].args())

    assert result.is_error is False
    assert result.structured_content["new_build_id"] is None


# Errors ---------------------------------------------------------------------------------------------

ERROR_ROWS = [
    (
        401,
        {"message": "MCP token has expired"},
        ["rejected", "MCP token has expired", "INFRABOX_MCP_TOKEN"],
        "error",
    ),
    (
        403,
        {"message": "access to this project is not permitted for the current MCP token"},
        [f"Project {PROJECT_ID} is not enabled", "list_projects"],
        "error",
    ),
    (404, {"message": FLASK_404}, ["was not found in project", "list_builds"], "error"),
    (
        400,
        {"message": "job in state running cannot be restarted", "status": 400},
        ["current state", "job in state running cannot be restarted"],
        "error",
    ),
    (
        409,
        {"message": "some dependent jobs are still running"},
        ["some dependent jobs are still running"],
        "error",
    ),
    (422, {"message": "job type cannot be restarted"}, ["job type cannot be restarted"], "error"),
    (500, {"message": "Internal Server Error"}, ["outcome is unknown", "before retrying"], "unknown"),
    (502, {"message": "Bad Gateway"}, ["outcome is unknown"], "unknown"),
    (503, {"message": "unavailable"}, ["outcome is unknown"], "unknown"),
    (405, {"message": "The method is not allowed for the requested URL."}, ["unexpected answer"], "error"),
]


@ALL
@pytest.mark.parametrize(
    ("status", "body", "fragments", "outcome"), ERROR_ROWS, ids=[str(r[0]) for r in ERROR_ROWS]
)
async def test_each_upstream_error_becomes_an_actionable_tool_error(
    trigger, status, body, fragments, outcome, make_server, connect, infrabox, audit
):
    route = trigger.route(infrabox).respond(status, json=body)
    client = await connect(make_server())

    result = await client.call_tool(trigger.tool, trigger.args())

    assert result.is_error is True
    text = text_of(result)
    for fragment in fragments:
        assert fragment in text
    assert "If you entered the URL manually" not in text
    assert route.call_count == 1, "a write is never retried after an HTTP answer"
    last = audit.records[-1]
    assert (last["event"], last["outcome"], last["http_status"]) == ("result", outcome, status)


@pytest.mark.parametrize(("header", "wait"), [({"Retry-After": "17"}, "17 s"), ({}, "60 s")])
async def test_429_says_how_long_to_wait(header, wait, make_server, connect, infrabox):
    TRIGGERS["rerun_job"].route(infrabox).respond(
        429, json={"message": "rate limit exceeded, please slow down", "status": 429}, headers=header
    )
    client = await connect(make_server())

    result = await client.call_tool("rerun_job", TRIGGERS["rerun_job"].args())

    assert result.is_error is True
    assert f"Wait {wait}" in text_of(result)


# Permission -----------------------------------------------------------------------------------------


@ALL
async def test_declared_no_trigger_permission_refuses_without_sending(
    trigger, make_server, connect, infrabox, audit
):
    route = trigger.route(infrabox).respond(200, json=trigger.body_621)
    client = await connect(make_server(allow_trigger=False))

    result = await client.call_tool(trigger.tool, trigger.args())

    assert result.is_error is True
    text = text_of(result)
    assert "no trigger permission (allow_trigger)" in text
    assert "MCP_CI_ALLOW_TRIGGER=true" in text
    assert route.call_count == 0
    assert [(r["decision"], r["reason"]) for r in audit.records] == [("denied", "trigger_not_allowed")]
    # Nothing was sent, so the refusal's record is written without an fsync of its own: a flood of refused
    # calls costs no disk syncs (a later durable record's fsync makes it durable too).
    assert audit.durable == [False]


async def test_infrabox_403_no_trigger_permission_is_learned_for_every_trigger_tool(
    make_server, connect, infrabox, audit
):
    first = TRIGGERS["restart_build"]
    routes = {t.tool: t.route(infrabox) for t in TRIGGERS.values()}
    routes["restart_build"].respond(403, json={"message": "this MCP token does not have trigger permission"})
    for tool, route in routes.items():
        if tool != "restart_build":
            route.respond(200, json={})
    client = await connect(make_server())

    refused = await client.call_tool("restart_build", first.args())
    later = [await client.call_tool(t.tool, t.args()) for t in TRIGGERS.values()]

    assert "does not have trigger permission" in text_of(refused)
    assert all(r.is_error for r in later)
    assert all("InfraBox answered earlier" in text_of(r) for r in later)
    assert sum(route.call_count for route in routes.values()) == 1
    whoami = (await client.call_tool("whoami", {})).structured_content
    assert whoami["trigger_permission"]["allowed"] is False
    assert whoami["trigger_permission"]["refused_by_infrabox_at"] is not None
    assert [r["reason"] for r in audit.records if r["decision"] == "denied"] == ["trigger_not_allowed"] * 5


# Budget ---------------------------------------------------------------------------------------------

# These tests repeat identical calls on purpose: the duplicate and restart-loop guards are off here.
BUDGET_ONLY = {"dedupe_seconds": 0, "max_restarts_per_build": 0}


async def test_sixth_trigger_in_a_minute_is_refused_without_sending(make_server, connect, infrabox, clock):
    routes = {t.tool: t.route(infrabox).respond(200, json=t.body_621) for t in TRIGGERS.values()}
    client = await connect(make_server(**BUDGET_ONLY))

    results = []
    for trigger in TRIGGERS.values():
        results.append(await client.call_tool(trigger.tool, trigger.args()))
        clock.advance(1)
    sixth = await client.call_tool("restart_build", TRIGGERS["restart_build"].args())

    assert [r.structured_content["trigger_budget"]["remaining"] for r in results] == [4, 3, 2, 1, 0]
    assert sixth.is_error is True
    assert "Trigger budget used up" in text_of(sixth)
    assert "Retry in 55 s" in text_of(sixth)
    assert sum(r.call_count for r in routes.values()) == 5


async def test_the_window_slides_a_slot_frees_strictly_after_sixty_seconds(
    make_server, connect, infrabox, clock
):
    route = TRIGGERS["abort_job"].route(infrabox).respond(200, json={})
    client = await connect(make_server(**BUDGET_ONLY))
    args = TRIGGERS["abort_job"].args()

    admitted = []
    start = clock.now
    for offset in [0.0, 59.9, 59.9, 59.9, 59.9, 59.95, 60.0, 60.05, 60.05, 119.0]:
        clock.now = start + offset
        if not (await client.call_tool("abort_job", args)).is_error:
            admitted.append(offset)

    assert admitted == [0.0, 59.9, 59.9, 59.9, 59.9, 60.05]
    assert route.call_count == 6


async def test_budget_holds_under_concurrent_calls(make_server, connect, infrabox, audit):
    route = TRIGGERS["restart_job"].route(infrabox).respond(200, json=TRIGGERS["restart_job"].body_621)
    client = await connect(make_server(**BUDGET_ONLY))
    results: list[Any] = []

    async def call() -> None:
        results.append(await client.call_tool("restart_job", TRIGGERS["restart_job"].args()))

    async with anyio.create_task_group() as group:
        for _ in range(20):
            group.start_soon(call)

    assert route.call_count == 5
    assert sum(not r.is_error for r in results) == 5
    assert sum("Trigger budget used up" in text_of(r) for r in results if r.is_error) == 15
    assert sum(r.get("reason") == "rate_limited" for r in audit.records) == 15


async def test_budget_is_configurable(make_server, connect, infrabox):
    route = TRIGGERS["abort_job"].route(infrabox).respond(200, json={})
    client = await connect(make_server(trigger_per_minute=2, **BUDGET_ONLY))

    results = [await client.call_tool("abort_job", TRIGGERS["abort_job"].args()) for _ in range(3)]

    assert [r.is_error for r in results] == [False, False, True]
    assert route.call_count == 2


async def test_refused_locally_uses_no_budget_but_sent_requests_count_whatever_the_answer(
    make_server, connect, infrabox
):
    trigger = TRIGGERS["rerun_job"]
    route = trigger.route(infrabox).respond(400, json={"message": "job in state skipped cannot be rerun"})
    client = await connect(make_server(**BUDGET_ONLY))

    for _ in range(3):
        await client.call_tool("rerun_job", trigger.args(job_id="not-a-uuid"))
    for _ in range(5):
        await client.call_tool("rerun_job", trigger.args())
    sixth = await client.call_tool("rerun_job", trigger.args())

    assert route.call_count == 5
    assert "Trigger budget used up" in text_of(sixth)


# Invalid ids ----------------------------------------------------------------------------------------

BAD_IDS = {
    "dot-dot": "../x",
    "encoded-dot-dot": "%2e%2e",
    "empty": "",
    "ten-kilobytes": "a" * 10_240,
    "braces": "{" + BUILD_ID + "}",
    "trailing-slash": BUILD_ID + "/",
    "bare-hex": BUILD_ID.replace("-", ""),
    "query": BUILD_ID + "?x=1",
    "whitespace": " " + BUILD_ID,
}


@ALL
@pytest.mark.parametrize("bad", BAD_IDS.values(), ids=BAD_IDS.keys())
@pytest.mark.parametrize("argument", ["project_id", "target"])
async def test_invalid_ids_are_refused_before_any_request(
    trigger, bad, argument, make_server, connect, infrabox, audit
):
    route = trigger.route(infrabox).respond(200, json={})
    client = await connect(make_server())
    name = "project_id" if argument == "project_id" else trigger.id_argument

    result = await client.call_tool(trigger.tool, trigger.args(**{name: bad}))

    assert result.is_error is True
    text = text_of(result)
    assert f"{name} must be a UUID" in text
    assert "Nothing was sent" in text
    assert len(text) < 500
    assert route.call_count == 0
    assert not infrabox.calls
    [record] = audit.records
    assert (record["decision"], record["reason"]) == ("denied", "invalid_input")
    assert len(audit.lines[0]) < 1000


async def test_uppercase_uuids_are_accepted_and_sent_in_canonical_form(make_server, connect, infrabox):
    route = TRIGGERS["abort_build"].route(infrabox).respond(200, json={})
    client = await connect(make_server())

    result = await client.call_tool(
        "abort_build", {"project_id": PROJECT_ID.upper(), "build_id": BUILD_ID.upper()}
    )

    assert result.is_error is False
    assert route.calls.last.request.url.path == TRIGGERS["abort_build"].path


# Retries --------------------------------------------------------------------------------------------


async def test_a_write_is_retried_when_the_connection_was_refused(make_server, connect, infrabox, sleeps):
    route = TRIGGERS["restart_build"].route(infrabox)
    route.side_effect = [
        httpx.ConnectError("refused"),
        httpx.ConnectTimeout("timeout"),
        httpx.Response(200, json=TRIGGERS["restart_build"].body_621),
    ]
    client = await connect(make_server())

    result = await client.call_tool("restart_build", TRIGGERS["restart_build"].args())

    assert result.is_error is False
    assert route.call_count == 3
    assert len(sleeps) == 2 and all(0 < s <= 4.5 for s in sleeps)
    assert {call.request.headers["x-request-id"] for call in route.calls} == {"req-1"}


async def test_a_write_gives_up_after_three_refused_connections(
    make_server, connect, infrabox, sleeps, audit
):
    route = TRIGGERS["abort_job"].route(infrabox)
    route.side_effect = httpx.ConnectError("refused")
    client = await connect(make_server())

    result = await client.call_tool("abort_job", TRIGGERS["abort_job"].args())

    assert result.is_error is True
    assert "Could not reach InfraBox at https://infrabox.test" in text_of(result)
    assert "nothing was sent" in text_of(result)
    assert route.call_count == 3
    assert audit.records[-1]["reason"] == "unreachable"


@ALL
@pytest.mark.parametrize(
    "error",
    [httpx.ReadTimeout("slow"), httpx.ReadError("reset"), httpx.RemoteProtocolError("Server disconnected")],
    ids=["read-timeout", "reset", "disconnected"],
)
async def test_a_write_is_never_retried_once_it_may_have_been_sent(
    trigger, error, make_server, connect, infrabox, sleeps, audit
):
    route = trigger.route(infrabox)
    route.side_effect = error
    client = await connect(make_server())

    result = await client.call_tool(trigger.tool, trigger.args())

    assert route.call_count == 1
    assert sleeps == []
    assert "outcome is unknown" in text_of(result)
    assert (audit.records[-1]["outcome"], audit.records[-1]["reason"]) == ("unknown", "outcome_unknown")


# Audit ----------------------------------------------------------------------------------------------


async def test_the_attempt_record_is_durable_before_the_request_leaves(make_server, connect, infrabox, audit):
    seen_at_send: list[list[dict[str, Any]]] = []

    def respond(request: httpx.Request) -> httpx.Response:
        seen_at_send.append(list(audit.records))
        return httpx.Response(200, json=TRIGGERS["restart_job"].body_621)

    TRIGGERS["restart_job"].route(infrabox).mock(side_effect=respond)
    client = await connect(make_server())

    await client.call_tool("restart_job", TRIGGERS["restart_job"].args())

    [before] = seen_at_send
    assert [(r["event"], r["decision"]) for r in before] == [("attempt", "allowed")]
    assert audit.durable == [True, True]
    result = audit.records[1]
    assert result["event"] == "result"
    assert result["outcome"] == "success"
    assert result["detail"] == {"jobs_restarted": 3, "message": "Successfully restarted job"}
    for record in audit.records:
        assert record["ts"].endswith("Z") and "T" in record["ts"]
        assert record["token"].startswith("sha256:") and len(record["token"]) == 19
        assert record["project_id"] == PROJECT_ID and record["job_id"] == JOB_ID


@ALL
async def test_trigger_tools_fail_closed_when_the_audit_cannot_be_written(
    trigger, make_server, connect, infrabox
):
    route = trigger.route(infrabox).respond(200, json=trigger.body_621)
    client = await connect(make_server(audit_sink=BrokenSink()))

    result = await client.call_tool(trigger.tool, trigger.args())

    assert result.is_error is True
    assert "audit log cannot be written" in text_of(result)
    assert "MCP_CI_AUDIT_LOG" in text_of(result)
    assert route.call_count == 0


async def test_the_token_never_appears_in_results_errors_or_audit(make_server, connect, infrabox, audit):
    for trigger in TRIGGERS.values():
        trigger.route(infrabox).respond(401, json={"message": f"invalid or unknown MCP token {TOKEN}"})
    client = await connect(make_server())

    texts = [text_of(await client.call_tool(t.tool, t.args())) for t in TRIGGERS.values()]
    texts.append(json.dumps((await client.call_tool("whoami", {})).structured_content))

    assert all(TOKEN not in text for text in texts)
    assert all(TOKEN[7:] not in line for line in audit.lines)
    assert "sha256:" in texts[0]


async def test_audit_lines_land_in_the_configured_file(make_server, connect, infrabox, tmp_path):
    from mcp_ci_tools.audit import JsonlFileSink

    path = tmp_path / "state" / "audit.jsonl"
    TRIGGERS["abort_job"].route(infrabox).respond(200, json={})
    client = await connect(make_server(audit_sink=JsonlFileSink(path)))

    await client.call_tool("abort_job", TRIGGERS["abort_job"].args())
    await client.call_tool("abort_job", TRIGGERS["abort_job"].args(job_id="nope"))

    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(r["event"], r.get("outcome")) for r in records] == [
        ("attempt", None),
        ("result", "success"),
        ("result", "denied"),
    ]
    assert oct(path.stat().st_mode & 0o777) == "0o600"


# whoami ---------------------------------------------------------------------------------------------


async def test_whoami_shows_identity_and_budget_without_calling_infrabox(
    make_server, connect, infrabox, clock
):
    TRIGGERS["abort_job"].route(infrabox).respond(200, json={})
    client = await connect(make_server(trigger_per_minute=1))
    await client.call_tool("abort_job", TRIGGERS["abort_job"].args())
    clock.advance(20)

    content = (await client.call_tool("whoami", {})).structured_content

    assert content["infrabox_url"] == "https://infrabox.test"
    assert content["token_fingerprint"] == "sha256:9a7b30619557"
    assert content["trigger_permission"] == {
        "declared": True,
        "refused_by_infrabox_at": None,
        "allowed": True,
    }
    assert content["trigger_budget"] == {
        "limit": 1,
        "remaining": 0,
        "window_seconds": 60,
        "seconds_until_next_slot": 40,
    }
    assert "40 s" in content["hint"]
    assert len(infrabox.calls) == 1


async def test_a_call_cancelled_in_flight_still_leaves_its_result_record(make_server, infrabox, audit):
    started = anyio.Event()

    async def hang(request: httpx.Request) -> httpx.Response:
        started.set()
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    TRIGGERS["restart_build"].route(infrabox).mock(side_effect=hang)
    server = make_server()

    async with anyio.create_task_group() as group:
        group.start_soon(server.call_tool, "restart_build", TRIGGERS["restart_build"].args())
        await started.wait()
        group.cancel_scope.cancel()

    assert [(r["event"], r.get("outcome"), r.get("reason")) for r in audit.records] == [
        ("attempt", None, None),
        ("result", "unknown", "cancelled"),
    ]
