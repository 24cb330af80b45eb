"""Reconciled failure views and failure kinds: get_build, diagnose_build and wait_for_build read retries
(`test` → `test.1`) by their latest attempt, and diagnose_build says whether a failure is flaky or real.
InfraBox mocked with respx."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import BUILD_ID, PROJECT_ID, text_of

pytestmark = pytest.mark.anyio

P = f"/projects/{PROJECT_ID}"
ARGS = {"project_id": PROJECT_ID, "build_id": BUILD_ID}
OTHER_BUILD = "bbbbbbbb-0000-4000-8000-000000000001"
OTHER_BUILD_2 = "bbbbbbbb-0000-4000-8000-000000000002"


def jid(n: int) -> str:
    return f"aaaaaaaa-0000-4000-8000-{n:012d}"


def build(build_id: str = BUILD_ID, *, number: int = 42, restart: int = 0, commit: str = "3f2a9c1",
          status: str = "failure") -> dict[str, Any]:  # fmt: skip
    return {
        "id": build_id,
        "build_number": number,
        "restart_counter": restart,
        "project_id": PROJECT_ID,
        "commit_id": commit,
        "branch": "main",
        "created_at": "2027-01-15T07:50:00+00:00",
        "finished_at": "2027-01-15T07:58:00+00:00",
        "status": status,
    }


def job(
    n: int, name: str, state: str, message: str | None = None, build_id: str = BUILD_ID
) -> dict[str, Any]:
    return {
        "id": jid(n),
        "name": name,
        "state": state,
        "build_id": build_id,
        "project_id": PROJECT_ID,
        "start_date": "2027-01-15T07:50:00+00:00",
        "end_date": "2027-01-15T07:52:30+00:00",
        "message": message,
    }


def run(name: str, state: str) -> dict[str, Any]:
    return {
        "state": state,
        "name": name,
        "suite": "tests.test_pay",
        "duration": 1.0,
        "message": f"{name} {state}",
    }


def mock(infrabox, jobs: list[dict[str, Any]], *, builds: list[dict[str, Any]] | None = None,
         runs: dict[int, list[dict[str, Any]]] | None = None, logs: dict[int, str] | None = None) -> Any:  # fmt: skip
    infrabox.get(f"{P}/builds/{BUILD_ID}").respond(200, json=build())
    infrabox.get(f"{P}/builds/{BUILD_ID}/jobs").respond(200, json=jobs)
    listed = infrabox.get(f"{P}/builds").respond(200, json=builds if builds is not None else [build()])
    for n, found in (runs or {}).items():
        infrabox.get(f"{P}/jobs/{jid(n)}/testruns").respond(200, json=found)
    for n, text in (logs or {}).items():
        infrabox.get(f"{P}/jobs/{jid(n)}/log").respond(200, json=text)
    infrabox.route(method="GET", path__regex=r".*/jobs/[^/]+/testruns$").respond(200, json=[])
    infrabox.route(method="GET", path__regex=r".*/jobs/[^/]+/log$").respond(200, json="")
    return listed


RETRIED_GREEN = [
    job(1, "build", "finished"),
    job(2, "deploy", "skipped", "dependency test failed"),
    job(3, "deploy.1", "finished"),
    job(4, "test", "failure", "1 test failed"),
    job(5, "test.1", "finished"),
]
RETRIED_RED = [job(1, "build", "finished"), job(4, "test", "failure"), job(5, "test.1", "failure")]
FAILED_TWICE = [
    job(1, "build", "finished"),
    job(4, "test", "failure"),
    job(5, "test.1", "error"),
    job(6, "test.2", "finished"),
]


# reconciliation: the same counts and failures in all three tools ------------------------------------------


async def test_failed_then_retried_green_is_recovered_not_a_current_failure(make_server, connect, infrabox):
    mock(infrabox, RETRIED_GREEN, runs={4: [run("test_a", "failure"), run("test_b", "ok")],
                                       5: [run("test_a", "ok"), run("test_b", "ok")]})  # fmt: skip
    client = await connect(make_server())

    got = (await client.call_tool("get_build", ARGS)).structured_content
    diagnosed = (await client.call_tool("diagnose_build", ARGS)).structured_content
    waited = (await client.call_tool("wait_for_build", ARGS)).structured_content

    for content in (got, diagnosed, waited):
        assert content["state_counts"] == {"finished": 3}
        assert content["all_attempts_state_counts"] == {"failure": 1, "finished": 3, "skipped": 1}
        assert content["jobs_total"] == 5
        history = {h["name"]: h for h in content["job_history"]}
        assert set(history) == {"test", "deploy"}
        assert history["test"]["recovered_on_retry"] is True
        assert history["test"]["current_job_id"] == jid(5)
        assert [(a["name"], a["state"]) for a in history["test"]["attempts"]] == [
            ("test", "failure"),
            ("test.1", "finished"),
        ]
        # the downstream job skipped in the original and run in the clone: the clone's state counts
        assert (history["deploy"]["current_state"], history["deploy"]["recovered_on_retry"]) == (
            "finished",
            False,
        )
    views = {j["name"]: j for j in got["jobs"]}
    assert (views["test"]["actions"]["rerun"], views["test"]["actions"]["restart"]) == ("no", "no")
    assert "act on its newest clone" in views["test"]["actions"]["reasons"]["rerun"]
    assert views["test.1"]["actions"]["rerun"] != "no"
    assert diagnosed["problem_jobs"] == []
    assert diagnosed["flaky_suspect_tests"] == [
        {
            "job": "test",
            "name": "test_a",
            "suite": "tests.test_pay",
            "failed_in": ["test"],
            "passed_in": ["test.1"],
        }
    ]
    assert "Recovered on retry (failed, then passed; not a current failure): 'test'." in diagnosed["summary"]
    assert "now 3 finished" in diagnosed["summary"]
    assert waited["failed_jobs"] == [] and waited["next_step"] is None
    assert "Recovered on retry" in waited["summary"]


async def test_failed_then_retried_red_is_one_current_failure_with_its_history(
    make_server, connect, infrabox
):
    mock(infrabox, RETRIED_RED, runs={4: [run("test_a", "failure")], 5: [run("test_a", "failure")]})
    client = await connect(make_server())

    got = (await client.call_tool("get_build", ARGS)).structured_content
    diagnosed = (await client.call_tool("diagnose_build", ARGS)).structured_content
    waited = (await client.call_tool("wait_for_build", ARGS)).structured_content

    for content in (got, diagnosed, waited):
        assert content["state_counts"] == {"failure": 1, "finished": 1}
        [history] = content["job_history"]
        assert (history["current_state"], history["failed_attempts"]) == ("failure", 2)
        assert history["recovered_on_retry"] is False
    [problem] = diagnosed["problem_jobs"]
    assert problem["job"]["id"] == jid(5) and problem["job"]["name"] == "test.1"
    assert [a["name"] for a in problem["attempts"]] == ["test", "test.1"]
    assert [t["name"] for t in problem["failed_tests"]] == ["test_a"]
    verdict = problem["classification"]
    assert verdict["kind"] == "deterministic_suspect"
    assert verdict["evidence"] == ["test `test_a` (tests.test_pay) fails now (test.1) and failed in test"]
    assert "Do not restart" in verdict["advice"]
    assert [j["id"] for j in waited["failed_jobs"]] == [jid(5)]
    assert "after 2 attempts" in waited["summary"]


async def test_failed_twice_then_green_counts_once_and_lists_three_attempts(make_server, connect, infrabox):
    mock(infrabox, FAILED_TWICE)
    client = await connect(make_server())

    got = (await client.call_tool("get_build", ARGS)).structured_content
    diagnosed = (await client.call_tool("diagnose_build", ARGS)).structured_content
    waited = (await client.call_tool("wait_for_build", ARGS)).structured_content

    for content in (got, diagnosed, waited):
        assert content["state_counts"] == {"finished": 2}
        assert content["all_attempts_state_counts"] == {"error": 1, "failure": 1, "finished": 2}
        [history] = content["job_history"]
        assert [a["name"] for a in history["attempts"]] == ["test", "test.1", "test.2"]
        assert (history["failed_attempts"], history["recovered_on_retry"]) == (2, True)
        assert history["current_job_id"] == jid(6)
    assert diagnosed["problem_jobs"] == [] and waited["failed_jobs"] == []


async def test_a_dotted_name_is_a_retry_only_with_digits_and_its_original_in_the_build(
    make_server, connect, infrabox
):
    jobs = [job(1, "build.v2", "failure"), job(2, "py.3", "failure"), job(3, "build", "finished")]
    mock(infrabox, jobs)
    client = await connect(make_server())

    content = (await client.call_tool("get_build", ARGS)).structured_content

    assert content["job_history"] == []
    assert content["state_counts"] == {"failure": 2, "finished": 1}


async def test_a_job_upstream_says_was_never_restarted_is_not_the_original_of_a_dotted_name(
    make_server, connect, infrabox
):
    jobs = [{**job(1, "py", "failure"), "restarted": False}, job(2, "py.3", "finished")]
    mock(infrabox, jobs)
    client = await connect(make_server())

    content = (await client.call_tool("get_build", ARGS)).structured_content

    assert content["job_history"] == []
    assert content["state_counts"] == {"failure": 1, "finished": 1}


# classification ------------------------------------------------------------------------------------------


async def diagnose(make_server, connect, **overrides: Any) -> dict[str, Any]:
    client = await connect(make_server(**overrides))
    content: dict[str, Any] = (await client.call_tool("diagnose_build", ARGS)).structured_content
    return content


async def test_a_killed_job_is_infrastructure_with_the_matching_log_lines(make_server, connect, infrabox):
    log = "collected 58 items\n/bin/sh: line 1:    57 Killed    pytest -q\nmore output\n"
    listed = mock(infrabox, [job(4, "test", "error", "Container exited with code 137")], logs={4: log})

    [problem] = (await diagnose(make_server, connect))["problem_jobs"]

    verdict = problem["classification"]
    assert verdict["kind"] == "infrastructure"
    assert verdict["evidence"] == [
        "killed_137: Container exited with code 137",
        "killed_137: /bin/sh: line 1:    57 Killed    pytest -q",
    ]
    assert verdict["advice"].startswith("Not the code: the container was killed")
    assert listed.call_count == 0, "an explained failure needs no other builds"


async def test_a_plain_failure_log_is_not_infrastructure(make_server, connect, infrabox):
    mock(
        infrabox, [job(4, "test", "failure", "Container exited with code 1")], logs={4: "E   assert 1 == 2\n"}
    )

    [problem] = (await diagnose(make_server, connect))["problem_jobs"]

    assert problem["classification"]["kind"] == "unknown"
    assert problem["classification"]["evidence"] == []
    assert "no retry and no other build" in problem["classification"]["note"]
    assert "get_job_log" in problem["classification"]["advice"]


async def test_a_test_that_passed_in_a_build_of_the_same_commit_is_flaky(make_server, connect, infrabox):
    builds = [build(OTHER_BUILD, restart=1, status="finished"), build()]
    mock(infrabox, [job(4, "test", "failure")], builds=builds, runs={4: [run("test_a", "failure")],
         14: [run("test_a", "ok")]})  # fmt: skip
    infrabox.get(f"{P}/builds/{OTHER_BUILD}/jobs").respond(
        200, json=[job(14, "test", "finished", None, OTHER_BUILD)]
    )

    [problem] = (await diagnose(make_server, connect))["problem_jobs"]

    verdict = problem["classification"]
    assert verdict["kind"] == "flaky_suspect"
    assert verdict["evidence"] == [
        "test `test_a` (tests.test_pay) fails now (test) but passed in build #42 (restart 1) of the same commit"
    ]
    assert "Rerun once" in verdict["advice"]


async def test_a_test_that_failed_in_the_same_commit_again_is_not_flaky(make_server, connect, infrabox):
    builds = [build(OTHER_BUILD, restart=1), build()]
    mock(infrabox, [job(4, "test", "failure")], builds=builds, runs={4: [run("test_a", "failure")],
         14: [run("test_a", "failure")]})  # fmt: skip
    infrabox.get(f"{P}/builds/{OTHER_BUILD}/jobs").respond(
        200, json=[job(14, "test", "failure", None, OTHER_BUILD)]
    )

    [problem] = (await diagnose(make_server, connect))["problem_jobs"]

    assert problem["classification"]["kind"] == "deterministic_suspect"


async def test_a_test_failing_on_the_previous_build_of_the_branch_is_deterministic(
    make_server, connect, infrabox
):
    builds = [
        build(),
        build(OTHER_BUILD, number=41, commit="0a1b2c3"),
        build(OTHER_BUILD_2, number=40, commit="9f"),
    ]
    mock(infrabox, [job(4, "test", "failure")], builds=builds, runs={4: [run("test_a", "failure")],
         14: [run("test_a", "failure")], 24: [run("test_a", "ok")]})  # fmt: skip
    infrabox.get(f"{P}/builds/{OTHER_BUILD}/jobs").respond(
        200, json=[job(14, "test", "failure", None, OTHER_BUILD)]
    )
    infrabox.get(f"{P}/builds/{OTHER_BUILD_2}/jobs").respond(
        200, json=[job(24, "test", "finished", None, OTHER_BUILD_2)]
    )

    [problem] = (await diagnose(make_server, connect))["problem_jobs"]

    verdict = problem["classification"]
    assert verdict["kind"] == "deterministic_suspect"
    assert verdict["evidence"] == [
        "test `test_a` (tests.test_pay) fails now (test) and failed in build #41 of branch main"
    ]


async def test_a_test_that_passed_on_the_previous_build_of_the_branch_is_not_deterministic(
    make_server, connect, infrabox
):
    builds = [build(), build(OTHER_BUILD, number=41, commit="0a1b2c3", status="finished")]
    mock(infrabox, [job(4, "test", "failure")], builds=builds, runs={4: [run("test_a", "failure")],
         14: [run("test_a", "ok")]})  # fmt: skip
    infrabox.get(f"{P}/builds/{OTHER_BUILD}/jobs").respond(
        200, json=[job(14, "test", "finished", None, OTHER_BUILD)]
    )

    [problem] = (await diagnose(make_server, connect))["problem_jobs"]

    verdict = problem["classification"]
    assert verdict["kind"] == "unknown" and verdict["evidence"] == []
    assert "no retry or other build showed the same test failing or passing" in verdict["note"]


async def test_without_budget_for_other_builds_the_kind_is_unknown_and_says_why(
    make_server, connect, infrabox
):
    builds = [build(), build(OTHER_BUILD, number=41, commit="0a1b2c3")]
    listed = mock(infrabox, [job(4, "test", "failure")], builds=builds, runs={4: [run("test_a", "failure")]})
    infrabox.get(f"{P}/builds/{OTHER_BUILD}/jobs").respond(
        200, json=[job(14, "test", "failure", None, OTHER_BUILD)]
    )

    content = await diagnose(make_server, connect, read_per_minute=1)

    [problem] = content["problem_jobs"]
    assert problem["classification"]["kind"] == "unknown"
    assert (
        "other builds of the branch: the list_builds budget is used up" in problem["classification"]["note"]
    )
    assert "other builds of the branch: the list_builds budget is used up" in content["left_out"]
    assert listed.call_count == 0


async def test_other_builds_are_bounded(make_server, connect, infrabox):
    restarts = [build(f"bbbbbbbb-0000-4000-8000-{n:012d}", restart=n) for n in range(1, 6)]
    older = [build(f"bbbbbbbb-0000-4000-8000-{n:012d}", number=n, commit=f"c{n}") for n in range(30, 42)]
    mock(infrabox, [job(4, "test", "failure")], builds=[build(), *restarts, *older])
    read = infrabox.route(method="GET", path__regex=r".*/builds/bbbbbbbb-[^/]+/jobs$").respond(200, json=[])

    content = await diagnose(make_server, connect, read_per_minute=100)

    assert read.call_count == 3
    assert "other builds: only 3 of the branch were compared" in content["left_out"]
    assert content["problem_jobs"][0]["classification"]["kind"] == "unknown"


async def test_wait_for_build_does_not_wait_for_a_restarted_original_left_queued(
    make_server, connect, infrabox
):
    # restart_job accepts queued dependents: their clones replace them and the originals never run
    jobs = [
        job(1, "build", "finished"),
        job(2, "deploy", "queued"),
        job(3, "deploy.1", "finished"),
        job(4, "test", "failure"),
        job(5, "test.1", "finished"),
    ]
    mock(infrabox, jobs)
    client = await connect(make_server())

    content = (await client.call_tool("wait_for_build", ARGS)).structured_content

    assert (content["ended"], content["timed_out"], content["polls"]) == (True, False, 1)
    assert content["state_counts"] == {"finished": 3}
    assert content["all_attempts_state_counts"] == {"failure": 1, "finished": 3, "queued": 1}
    assert content["failed_jobs"] == [] and content["next_step"] is None


async def test_thousands_of_retried_jobs_stay_under_100_kb_and_say_what_was_cut(
    make_server, connect, infrabox
):
    jobs = [job(n, f"shard-{n:04d}", "failure") for n in range(1, 2001)]
    jobs += [job(10_000 + n, f"shard-{n:04d}.1", "finished") for n in range(1, 2001)]
    mock(infrabox, jobs)
    client = await connect(make_server())

    seen = {}
    for tool in ("get_build", "diagnose_build", "wait_for_build"):
        result = await client.call_tool(tool, ARGS)
        seen[tool] = content = result.structured_content
        assert len(text_of(result).encode()) < 100_000, tool
        assert content["state_counts"] == {"finished": 2000}, tool
        assert 0 < len(content["job_history"]) < 2000, tool
    cut = 2000 - len(seen["diagnose_build"]["job_history"])
    assert f"the history of {cut} retried job(s) (20 kB cap)" in seen["diagnose_build"]["left_out"]
