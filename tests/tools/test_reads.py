"""The read tools through an in-memory SDK client (both protocol modes), InfraBox mocked with respx."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.conftest import BUILD_ID, JOB_ID, NEW_ID, PROJECT_ID, TOKEN, text_of

pytestmark = pytest.mark.anyio

P = f"/projects/{PROJECT_ID}"
JOB_B = "aaaaaaaa-0000-4000-8000-000000000002"
JOB_C = "aaaaaaaa-0000-4000-8000-000000000003"
JOB_D = "aaaaaaaa-0000-4000-8000-000000000004"


def build(**overrides: Any) -> dict[str, Any]:
    body = {
        "id": BUILD_ID,
        "build_number": 42,
        "restart_counter": 1,
        "project_id": PROJECT_ID,
        "commit_id": "3f2a9c1",
        "branch": "main",
        "created_at": "2027-01-15T07:50:00+00:00",
        "finished_at": "2027-01-15T07:58:00+00:00",
        "status": "failure",
    }
    body.update(overrides)
    return body


def job(job_id: str, name: str, state: str, message: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "id": job_id,
        "name": name,
        "state": state,
        "build_id": BUILD_ID,
        "project_id": PROJECT_ID,
        "start_date": "2027-01-15T07:50:00+00:00",
        "end_date": "2027-01-15T07:52:30+00:00" if state not in ("running", "queued") else None,
        "message": message,
        **extra,
    }


RED_BUILD_JOBS = [
    job(JOB_B, "build", "finished"),
    job(JOB_D, "deploy", "skipped", "dependency test failed"),
    job(JOB_ID, "test", "failure", "3 tests failed"),
    job(JOB_C, "lint", "unstable", "warnings as errors"),
]


# list_projects / list_builds ---------------------------------------------------------------------------


@pytest.mark.parametrize("paged", [False, True], ids=["621-array", "628-paged"])
async def test_list_projects_accepts_both_list_shapes(paged, make_server, connect, infrabox):
    items = [{"id": PROJECT_ID, "name": "payments", "type": "upload", "public": False}]
    infrabox.get("/projects").respond(
        200, json={"items": items, "total": 1, "limit": 50, "offset": 0} if paged else items
    )
    client = await connect(make_server())

    content = (await client.call_tool("list_projects", {})).structured_content

    assert content["projects"] == items
    assert (content["returned"], content["total"], content["truncated"]) == (1, 1, False)


async def test_list_builds_asks_upstream_to_filter_and_filters_again_locally(make_server, connect, infrabox):
    route = infrabox.get(f"{P}/builds").respond(
        200,
        json=[
            build(id=NEW_ID, branch="main", status="running"),
            build(branch="main", status="failure"),
            build(id=JOB_B, branch="feature/x", status="failure"),
        ],
    )
    client = await connect(make_server())

    content = (
        await client.call_tool(
            "list_builds", {"project_id": PROJECT_ID, "branch": "main", "status": "failure"}
        )
    ).structured_content

    assert dict(route.calls.last.request.url.params) == {"branch": "main", "status": "failure", "limit": "20"}
    assert [b["id"] for b in content["builds"]] == [BUILD_ID]
    assert content["filters"] == {"branch": "main", "status": "failure"}
    assert content["note"] is None


@pytest.mark.parametrize(("asked", "applied"), [(500, 50), (0, 1), (-3, 1)])
async def test_list_builds_clamps_the_limit_and_says_so(asked, applied, make_server, connect, infrabox):
    route = infrabox.get(f"{P}/builds").respond(
        200, json=[build(id=f"{i:08d}-0000-4000-8000-000000000000") for i in range(60)]
    )
    client = await connect(make_server())

    content = (
        await client.call_tool("list_builds", {"project_id": PROJECT_ID, "limit": asked})
    ).structured_content

    assert route.calls.last.request.url.params["limit"] == str(applied)
    assert content["limit"] == applied
    assert content["returned"] == applied
    assert f"clamped to {applied}" in content["note"]


# get_build -------------------------------------------------------------------------------------------


async def test_get_build_counts_every_state_and_lists_problem_jobs_first(
    make_server, connect, infrabox, clock
):
    infrabox.get(f"{P}/builds/{BUILD_ID}").respond(200, json=build())
    infrabox.get(f"{P}/builds/{BUILD_ID}/jobs").respond(200, json=RED_BUILD_JOBS)
    client = await connect(make_server())

    content = (
        await client.call_tool("get_build", {"project_id": PROJECT_ID, "build_id": BUILD_ID})
    ).structured_content

    assert content["build"]["build_number"] == 42
    assert content["state_counts"] == {"failure": 1, "finished": 1, "skipped": 1, "unstable": 1}
    assert [j["name"] for j in content["jobs"]] == ["test", "lint", "build", "deploy"]
    test = content["jobs"][0]
    assert (test["state"], test["duration_s"], test["message"]) == ("failure", 150.0, "3 tests failed")
    # #621 job objects lack type, restarted and dependencies: say unknown rather than guess.
    assert (test["actions"]["restart"], test["actions"]["rerun"], test["actions"]["abort"]) == (
        "unknown",
        "unknown",
        "no",
    )
    assert "type" in test["actions"]["reasons"]["restart"]
    assert content["jobs_total"] == 4 and content["truncated"] is False


async def test_get_build_decides_dependency_rules_when_upstream_gives_them(make_server, connect, infrabox):
    deps_on_test = [{"job": "test", "job-id": JOB_ID, "on": ["finished"]}]
    jobs = [
        job(JOB_ID, "test", "failure", type="run_project_container", restarted=False, dependencies=[]),
        job(
            JOB_D,
            "deploy",
            "running",
            type="run_project_container",
            restarted=False,
            dependencies=deps_on_test,
        ),
    ]
    infrabox.get(f"{P}/builds/{BUILD_ID}").respond(200, json=build())
    infrabox.get(f"{P}/builds/{BUILD_ID}/jobs").respond(
        200, json={"items": jobs, "total": 2, "limit": 50, "offset": 0}
    )
    client = await connect(make_server())

    content = (
        await client.call_tool("get_build", {"project_id": PROJECT_ID, "build_id": BUILD_ID})
    ).structured_content

    actions = {j["name"]: j["actions"] for j in content["jobs"]}
    assert actions["test"]["restart"] == "no"
    assert "still running" in actions["test"]["reasons"]["restart"]
    assert actions["test"]["rerun"] == "yes"
    assert actions["deploy"]["abort"] == "yes"


async def test_get_build_of_ten_thousand_jobs_stays_under_100_kb(make_server, connect, infrabox):
    jobs = [
        job(f"{i:08d}-0000-4000-8000-000000000000", f"job-{i}", "finished", "x" * 1000) for i in range(10_000)
    ]
    jobs[7_777]["state"] = "failure"
    infrabox.get(f"{P}/builds/{BUILD_ID}").respond(200, json=build())
    infrabox.get(f"{P}/builds/{BUILD_ID}/jobs").respond(200, json=jobs)
    client = await connect(make_server())

    result = await client.call_tool("get_build", {"project_id": PROJECT_ID, "build_id": BUILD_ID})

    assert len(json.dumps(result.structured_content)) < 100_000
    assert len(text_of(result).encode()) < 110_000
    content = result.structured_content
    assert content["state_counts"] == {"failure": 1, "finished": 9_999}
    assert content["jobs"][0]["name"] == "job-7777"
    assert (
        content["truncated"] is True
        and content["jobs_total"] == 10_000
        and 0 < content["jobs_shown"] < 10_000
    )


async def test_get_build_not_found_says_so_in_the_projects_terms(make_server, connect, infrabox):
    infrabox.get(f"{P}/builds/{BUILD_ID}").respond(
        404, json={"message": "The requested URL was not found on the server."}
    )
    infrabox.get(f"{P}/builds/{BUILD_ID}/jobs").respond(
        404, json={"message": "The requested URL was not found on the server."}
    )
    client = await connect(make_server())

    result = await client.call_tool("get_build", {"project_id": PROJECT_ID, "build_id": BUILD_ID})

    assert result.is_error is True
    assert f"Build {BUILD_ID} was not found in project {PROJECT_ID}" in text_of(result)
    assert "requested URL" not in text_of(result)


@pytest.mark.parametrize(
    ("status", "body", "fragment"),
    [
        (401, {"message": "invalid or unknown MCP token"}, "rejected this server's token"),
        (
            403,
            {"message": "access to this project is not permitted for the current MCP token"},
            "is not enabled",
        ),
        (500, {"message": "Internal Server Error"}, "no usable answer"),
    ],
)
async def test_read_errors_map_like_trigger_errors(
    status, body, fragment, make_server, connect, infrabox, audit
):
    route = infrabox.get(f"{P}/jobs/{JOB_ID}").respond(status, json=body)
    client = await connect(make_server())

    result = await client.call_tool("get_job", {"project_id": PROJECT_ID, "job_id": JOB_ID})

    assert result.is_error and fragment in text_of(result)
    assert route.call_count == 1
    assert (audit.records[-1]["outcome"], audit.records[-1]["http_status"]) == ("error", status)


# Retries and budgets -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "first",
    [
        httpx.Response(503, json={}),
        httpx.Response(502),
        httpx.RemoteProtocolError("dropped"),
        httpx.ReadTimeout("slow"),
    ],
    ids=["503", "502", "dropped-connection", "read-timeout"],
)
async def test_reads_are_retried_after_transient_failures(first, make_server, connect, infrabox, sleeps):
    route = infrabox.get(f"{P}/jobs/{JOB_ID}")
    route.side_effect = [first, httpx.Response(200, json=job(JOB_ID, "test", "failure"))]
    client = await connect(make_server())

    result = await client.call_tool("get_job", {"project_id": PROJECT_ID, "job_id": JOB_ID})

    assert result.is_error is False
    assert route.call_count == 2
    assert len(sleeps) == 1


async def test_reads_give_up_after_three_attempts(make_server, connect, infrabox, sleeps):
    route = infrabox.get(f"{P}/jobs/{JOB_ID}").respond(503, json={"message": "down"})
    client = await connect(make_server())

    result = await client.call_tool("get_job", {"project_id": PROJECT_ID, "job_id": JOB_ID})

    assert result.is_error is True
    assert route.call_count == 3
    assert len(sleeps) == 2


async def test_a_4xx_read_is_never_retried(make_server, connect, infrabox, sleeps):
    route = infrabox.get(f"{P}/jobs/{JOB_ID}").respond(400, json={"message": "bad"})
    client = await connect(make_server())

    await client.call_tool("get_job", {"project_id": PROJECT_ID, "job_id": JOB_ID})

    assert route.call_count == 1 and sleeps == []


async def test_retry_after_under_the_cap_is_honoured(make_server, connect, infrabox, sleeps):
    route = infrabox.get(f"{P}/jobs/{JOB_ID}")
    route.side_effect = [
        httpx.Response(503, headers={"Retry-After": "7"}),
        httpx.Response(200, json=job(JOB_ID, "test", "failure")),
    ]
    client = await connect(make_server())

    result = await client.call_tool("get_job", {"project_id": PROJECT_ID, "job_id": JOB_ID})

    assert result.is_error is False
    assert sleeps == [7.0]


async def test_retry_after_over_the_cap_returns_at_once_with_the_wait(make_server, connect, infrabox, sleeps):
    route = infrabox.get(f"{P}/jobs/{JOB_ID}").respond(503, headers={"Retry-After": "120"})
    client = await connect(make_server())

    result = await client.call_tool("get_job", {"project_id": PROJECT_ID, "job_id": JOB_ID})

    assert result.is_error is True
    assert "Retry in 120 s" in text_of(result)
    assert route.call_count == 1 and sleeps == []


async def test_a_read_the_budget_forbids_sends_nothing_not_even_a_first_lookup(
    make_server, connect, infrabox, audit
):
    build_route = infrabox.get(f"{P}/builds/{BUILD_ID}").respond(200, json=build())
    jobs_route = infrabox.get(f"{P}/builds/{BUILD_ID}/jobs").respond(200, json=RED_BUILD_JOBS)
    job_route = infrabox.get(f"{P}/jobs/{JOB_ID}").respond(200, json=job(JOB_ID, "test", "failure"))
    client = await connect(make_server(read_per_minute=3))
    for _ in range(3):
        assert not (await client.call_tool("get_job", {"project_id": PROJECT_ID, "job_id": JOB_ID})).is_error

    refused = await client.call_tool("get_build", {"project_id": PROJECT_ID, "build_id": BUILD_ID})

    assert refused.is_error is True
    assert "Read budget 'list_jobs' used up" in text_of(refused)
    assert "Retry in 60 s" in text_of(refused)
    assert (build_route.call_count, jobs_route.call_count, job_route.call_count) == (0, 0, 3)
    assert (audit.records[-1]["decision"], audit.records[-1]["reason"]) == ("denied", "rate_limited")


async def test_whoami_reports_every_read_budget(make_server, connect, infrabox):
    infrabox.get("/projects").respond(200, json=[])
    client = await connect(make_server(log_per_minute=4))
    await client.call_tool("list_projects", {})

    budgets = (await client.call_tool("whoami", {})).structured_content["read_budgets"]

    assert {name: (b["limit"], b["remaining"]) for name, b in budgets.items()} == {
        "list_projects": (30, 29),
        "list_builds": (30, 30),
        "list_jobs": (30, 30),
        "get_job_log": (4, 4),
    }


# get_job_log ------------------------------------------------------------------------------------------

SECRET_LOG = "\n".join(
    [
        "Step 1/4 : FROM python:3.11",
        f"curl -H 'Authorization: Bearer {TOKEN}' https://ci.internal/api",
        "export AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE",
        "-----BEGIN RSA PRIVATE KEY-----",
        "MIIEowIBAAKCAQEA7bq98Ls2pUfL0bHpN8Wm",
        "-----END RSA PRIVATE KEY-----",
        f"token={TOKEN}",
        "FAILED tests/test_pay.py::test_refund - AssertionError: 3 != 4",
        "ERROR: 1 failed, 41 passed",
    ]
)
SECRET_FRAGMENTS = [TOKEN[7:], "AKIAIOSFODNN7EXAMPLE", "MIIEowIBAAKCAQEA7bq98Ls2pUfL0bHpN8Wm"]


def _log_routes(infrabox, body: Any, state: str = "running"):
    infrabox.get(f"{P}/jobs/{JOB_ID}").respond(200, json=job(JOB_ID, "test", state))
    return infrabox.get(f"{P}/jobs/{JOB_ID}/log").respond(200, json=body)


@pytest.mark.parametrize("shape", ["621-string", "628-object"])
@pytest.mark.parametrize("grep", [None, "FAILED|ERROR|Bearer|AKIA|token="])
async def test_log_secrets_are_masked_in_both_shapes_and_both_modes(
    shape, grep, make_server, connect, infrabox
):
    body = (
        SECRET_LOG
        if shape == "621-string"
        else {
            "log": SECRET_LOG,
            "total_bytes": len(SECRET_LOG),
            "offset": 0,
            "length": len(SECRET_LOG),
            "truncated": False,
        }
    )
    _log_routes(infrabox, body)
    client = await connect(make_server())
    args = {"project_id": PROJECT_ID, "job_id": JOB_ID} | ({"grep": grep} if grep else {})

    result = await client.call_tool("get_job_log", args)

    content = result.structured_content
    for fragment in SECRET_FRAGMENTS:
        assert fragment not in text_of(result)
    assert "FAILED tests/test_pay.py::test_refund" in content["text"]
    assert content["masked_secrets"] >= 3
    assert content["untrusted"].startswith("Untrusted CI output")
    assert content["mode"] == ("grep" if grep else "tail")
    assert content["total_bytes"] == len(SECRET_LOG.encode())


async def test_a_50_mb_log_is_tailed_within_both_budgets(make_server, connect, infrabox):
    line = "x" * 99 + "\n"
    huge = line * 500_000 + "the last line"
    _log_routes(infrabox, huge)
    client = await connect(make_server())

    result = await client.call_tool(
        "get_job_log", {"project_id": PROJECT_ID, "job_id": JOB_ID, "tail_lines": 50, "max_bytes": 3000}
    )

    content = result.structured_content
    assert content["total_bytes"] == len(huge)
    assert content["returned_bytes"] <= 3000
    assert content["text"].endswith("the last line")
    assert content["text"].count("\n") <= 49
    assert content["truncated"] is True
    assert len(text_of(result).encode()) < 100_000


async def test_log_budgets_are_capped_and_the_cap_is_reported(make_server, connect, infrabox):
    _log_routes(infrabox, "a\n" * 10)
    client = await connect(make_server())

    content = (
        await client.call_tool(
            "get_job_log",
            {"project_id": PROJECT_ID, "job_id": JOB_ID, "tail_lines": 99_999, "max_bytes": 10**9},
        )
    ).structured_content

    assert "clamped to 2000/100000" in content["note"]
    assert content["truncated"] is False


async def test_grep_returns_matches_with_context_and_counts_all_matches(make_server, connect, infrabox):
    log = "\n".join(f"line {i}" + (" ERROR boom" if i % 100 == 0 else "") for i in range(1, 10_001))
    _log_routes(infrabox, log)
    client = await connect(make_server())

    content = (
        await client.call_tool(
            "get_job_log", {"project_id": PROJECT_ID, "job_id": JOB_ID, "grep": "ERROR", "max_bytes": 2000}
        )
    ).structured_content

    assert content["match_count"] == 100
    assert 0 < content["shown_matches"] < 100
    assert content["truncated"] is True
    assert "97-line 97" in content["text"] and "100:line 100 ERROR boom" in content["text"]
    assert content["returned_bytes"] <= 2000


async def test_an_invalid_grep_is_a_clear_error_and_sends_nothing(make_server, connect, infrabox):
    route = _log_routes(infrabox, "x")
    client = await connect(make_server())

    result = await client.call_tool(
        "get_job_log", {"project_id": PROJECT_ID, "job_id": JOB_ID, "grep": "(unclosed"}
    )

    assert result.is_error is True
    assert "grep: not usable as a Python regular expression (missing ), unterminated subpattern" in text_of(
        result
    )
    assert route.call_count == 0 and not infrabox.calls


async def test_a_catastrophic_grep_is_refused_before_any_request(make_server, connect, infrabox):
    route = _log_routes(infrabox, "a" * 50_000 + "!")
    client = await connect(make_server())

    result = await client.call_tool(
        "get_job_log", {"project_id": PROJECT_ID, "job_id": JOB_ID, "grep": "(a+)+$"}
    )

    assert result.is_error is True
    assert "grep: not usable" in text_of(result)
    assert route.call_count == 0


async def test_an_empty_log_of_a_finished_job_is_reported_as_archived(make_server, connect, infrabox):
    _log_routes(infrabox, "", state="failure")
    client = await connect(make_server())

    content = (
        await client.call_tool("get_job_log", {"project_id": PROJECT_ID, "job_id": JOB_ID})
    ).structured_content

    assert content["archived"] is True
    assert "archived and not available through this API" in content["note"]
    assert content["text"] == ""


async def test_upstreams_own_cut_is_reported(make_server, connect, infrabox):
    tail_part = "last MiB of the log\n"
    _log_routes(
        infrabox,
        {"log": tail_part, "total_bytes": 50_000_000, "offset": 49_999_980, "length": 20, "truncated": True},
    )
    client = await connect(make_server())

    content = (
        await client.call_tool("get_job_log", {"project_id": PROJECT_ID, "job_id": JOB_ID})
    ).structured_content

    assert content["total_bytes"] == 50_000_000
    assert content["truncated"] is True
    assert "only the last 20 of 50000000 bytes" in content["note"]


# get_test_results -------------------------------------------------------------------------------------


def make_testrun(name: str, state: str, stack_lines: int = 3) -> dict[str, Any]:
    return {
        "state": state,
        "name": name,
        "suite": "tests.test_pay",
        "duration": 0.25,
        "message": f"{name} failed: AssertionError",
        "stack": "\n".join(f'  File "pay.py", line {i}, in refund' for i in range(stack_lines)),
        "timestamp": "2027-01-15T07:51:00+00:00",
    }


async def test_only_failed_tests_by_default_with_stacks_cut(make_server, connect, infrabox):
    runs = [
        make_testrun("test_ok", "ok"),
        make_testrun("test_refund", "failure", 40),
        make_testrun("test_io", "error"),
        make_testrun("test_skip", "skipped"),
    ]
    infrabox.get(f"{P}/jobs/{JOB_ID}/testruns").respond(200, json=runs)
    client = await connect(make_server())

    content = (
        await client.call_tool("get_test_results", {"project_id": PROJECT_ID, "job_id": JOB_ID})
    ).structured_content

    assert [t["name"] for t in content["tests"]] == ["test_refund", "test_io"]
    assert (content["total"], content["failed_total"], content["truncated"]) == (4, 2, False)
    assert content["tests"][0]["stack"].count("\n") == 8
    assert content["tests"][0]["stack"].endswith("… 32 more lines")


async def test_test_results_with_huge_stacks_stay_under_100_kb(make_server, connect, infrabox):
    runs = [
        # 12 MB in all: under the 16 MiB the client reads of a list (tests/unit/test_client_hostile.py)
        dict(make_testrun(f"test_{i}", "failure"), stack="y" * 20_000, message="m" * 20_000)
        for i in range(300)
    ]
    infrabox.get(f"{P}/jobs/{JOB_ID}/testruns").respond(200, json=runs)
    client = await connect(make_server())

    result = await client.call_tool(
        "get_test_results", {"project_id": PROJECT_ID, "job_id": JOB_ID, "limit": 1000}
    )

    content = result.structured_content
    assert len(text_of(result).encode()) < 100_000
    assert content["failed_total"] == 300 and content["truncated"] is True
    assert "clamped to 200" in content["note"]


# diagnose_build ---------------------------------------------------------------------------------------


async def test_diagnose_build_explains_a_red_build_in_one_call(make_server, connect, infrabox, audit):
    infrabox.get(f"{P}/builds/{BUILD_ID}").respond(200, json=build())
    infrabox.get(f"{P}/builds").respond(200, json=[build()])
    infrabox.get(f"{P}/builds/{BUILD_ID}/jobs").respond(200, json=RED_BUILD_JOBS)
    infrabox.get(f"{P}/jobs/{JOB_ID}/log").respond(200, json=SECRET_LOG)
    infrabox.get(f"{P}/jobs/{JOB_C}/log").respond(200, json="")
    infrabox.get(f"{P}/jobs/{JOB_ID}/testruns").respond(
        200, json=[make_testrun("test_refund", "failure"), make_testrun("t", "ok")]
    )
    infrabox.get(f"{P}/jobs/{JOB_C}/testruns").respond(200, json=[])
    client = await connect(make_server())

    result = await client.call_tool("diagnose_build", {"project_id": PROJECT_ID, "build_id": BUILD_ID})

    content = result.structured_content
    assert [p["job"]["name"] for p in content["problem_jobs"]] == ["test", "lint"]
    test, lint = content["problem_jobs"]
    assert test["failed_tests_total"] == 1 and test["failed_tests"][0]["name"] == "test_refund"
    assert "ERROR: 1 failed, 41 passed" in test["log_tail"]
    assert lint["log_tail"] is None and "archived" in lint["log_note"]
    assert [j["name"] for j in content["other_jobs"]] == ["build", "deploy"]
    assert content["state_counts"] == {"failure": 1, "finished": 1, "skipped": 1, "unstable": 1}
    assert content["summary"].startswith("Build #42 on main is failure: 4 job(s)")
    assert "'test' is failure: 3 tests failed; 1 failed test(s)." in content["summary"]
    assert "restart_job" in content["summary"]
    for fragment in SECRET_FRAGMENTS:
        assert fragment not in text_of(result)
    assert content["left_out"] == []
    assert audit.records[-1]["tool"] == "diagnose_build"


async def test_diagnose_build_bounds_its_fetches_and_says_what_it_left_out(make_server, connect, infrabox):
    failed = [
        job(f"{i:08d}-0000-4000-8000-000000000000", f"shard-{i:02d}", "failure", "boom") for i in range(40)
    ]
    infrabox.get(f"{P}/builds/{BUILD_ID}").respond(200, json=build())
    infrabox.get(f"{P}/builds").respond(200, json=[build()])
    infrabox.get(f"{P}/builds/{BUILD_ID}/jobs").respond(200, json=failed)
    logs = infrabox.route(method="GET", path__regex=r".*/jobs/[^/]+/log$").respond(200, json="boom\n")
    tests = infrabox.route(method="GET", path__regex=r".*/jobs/[^/]+/testruns$").respond(200, json=[])
    client = await connect(make_server(read_per_minute=100, log_per_minute=100))

    content = (
        await client.call_tool("diagnose_build", {"project_id": PROJECT_ID, "build_id": BUILD_ID})
    ).structured_content

    assert logs.call_count == 10
    assert tests.call_count == 30
    assert "logs of 30 problem job(s): at most 10 per call" in content["left_out"]
    assert "tests of 10 problem job(s): at most 30 per call" in content["left_out"]


async def test_diagnose_build_fetches_only_what_the_budgets_allow(make_server, connect, infrabox):
    infrabox.get(f"{P}/builds/{BUILD_ID}").respond(200, json=build())
    infrabox.get(f"{P}/builds").respond(200, json=[build()])
    infrabox.get(f"{P}/builds/{BUILD_ID}/jobs").respond(200, json=RED_BUILD_JOBS)
    logs = infrabox.route(method="GET", path__regex=r".*/jobs/[^/]+/log$").respond(200, json="boom\n")
    infrabox.route(method="GET", path__regex=r".*/jobs/[^/]+/testruns$").respond(200, json=[])
    client = await connect(make_server(log_per_minute=1))

    content = (
        await client.call_tool("diagnose_build", {"project_id": PROJECT_ID, "build_id": BUILD_ID})
    ).structured_content

    assert logs.call_count == 1
    assert "logs of 1 job(s): the get_job_log budget is used up" in content["left_out"]
