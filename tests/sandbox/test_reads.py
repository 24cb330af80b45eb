"""The read endpoints answer with upstream's #621 shapes, over the seeded demo data."""

from __future__ import annotations

from pathlib import Path

import pytest

from mcp_ci_tools.sandbox import SEED

from .conftest import FakeClock, Job, Sandbox, open_sandbox

P = f"/projects/{SEED.payments}"
NOT_FOUND = {
    "message": "The requested URL was not found on the server. If you entered the URL manually please check "
    "your spelling and try again."
}
BUILD_KEYS = {
    "id",
    "build_number",
    "restart_counter",
    "project_id",
    "commit_id",
    "branch",
    "created_at",
    "finished_at",
    "status",
}
JOB_KEYS = {"id", "name", "state", "build_id", "project_id", "start_date", "end_date", "message"}


def test_list_projects_is_a_bare_array_of_the_callers_projects(sandbox: Sandbox) -> None:
    response = sandbox.get("/projects")

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == [
        {"id": SEED.payments, "name": "payments-service", "type": "github", "public": False},
        {"id": SEED.frontend, "name": "web-frontend", "type": "github", "public": True},
    ]


def test_list_projects_with_a_single_project_token_shows_only_that_project(sandbox: Sandbox) -> None:
    response = sandbox.get("/projects", role="single_project")

    assert [project["name"] for project in response.json()] == ["payments-service"]


def test_get_project_returns_one_project_object(sandbox: Sandbox) -> None:
    response = sandbox.get(f"/projects/{SEED.frontend}")

    assert response.json() == {"id": SEED.frontend, "name": "web-frontend", "type": "github", "public": True}


def test_list_builds_is_newest_first_with_the_build_fields_and_derived_status(sandbox: Sandbox) -> None:
    builds = sandbox.get(P + "/builds").json()

    assert all(set(build) == BUILD_KEYS for build in builds)
    assert [(b["build_number"], b["branch"], b["status"]) for b in builds] == [
        (44, "main", "running"),
        (43, "release/2.4", "unstable"),
        (42, "feature/refund-api", "failure"),
        (41, "main", "finished"),
        (40, "feature/idempotency", "finished"),  # its failed test passed on a retry (test.1)
        (39, "feature/batch-import", "error"),
        (38, "feature/fx-rates", "failure"),
        (37, "feature/fx-rates", "failure"),
        (36, "feature/ledger-export", "finished"),  # restart 1 of #36, same commit: green
        (36, "feature/ledger-export", "failure"),
    ]
    running, unstable = builds[0], builds[1]
    assert running["finished_at"] is None
    assert unstable["finished_at"] is not None
    assert unstable["created_at"].endswith("+00:00")
    assert unstable["restart_counter"] == 0
    assert len(unstable["commit_id"]) == 40


def test_list_builds_honours_branch_status_and_limit(sandbox: Sandbox) -> None:
    by_branch = sandbox.get(P + "/builds", params={"branch": "main"}).json()
    by_status = sandbox.get(P + "/builds", params={"status": "failure"}).json()
    limited = sandbox.get(P + "/builds", params={"limit": "2", "offset": "1"}).json()

    assert [build["build_number"] for build in by_branch] == [44, 41]
    assert [build["id"] for build in by_status] == [
        SEED.failed_build,
        SEED.deterministic_build,
        SEED.deterministic_previous_build,
        SEED.flaky_build,
    ]
    assert [build["build_number"] for build in limited] == [43, 42]


def test_list_builds_answers_400_for_a_limit_that_is_not_a_number(sandbox: Sandbox) -> None:
    response = sandbox.get(P + "/builds", params={"limit": "ten"})

    assert response.status_code == 400
    assert response.json() == {"message": "limit must be an integer", "status": 400}


def test_list_builds_returns_at_most_50_builds(sandbox: Sandbox) -> None:
    for _ in range(52):
        sandbox.add_build([])

    assert len(sandbox.get(P + "/builds", params={"limit": "500"}).json()) == 50


def test_a_build_without_jobs_has_a_null_status_and_no_finished_at(sandbox: Sandbox) -> None:
    build_id, _ = sandbox.add_build([], with_seed=False)

    build = sandbox.get(f"{P}/builds/{build_id}").json()

    assert (build["status"], build["finished_at"]) == (None, None)


def test_build_status_ignores_restarted_originals_whose_clones_stand_for_them(sandbox: Sandbox) -> None:
    build_id, _ = sandbox.add_build(
        [Job("test", "failure", restarted=True), Job("test.1", "finished"), Job("lint", "finished")]
    )

    assert sandbox.get(f"{P}/builds/{build_id}").json()["status"] == "finished"


def test_list_jobs_is_ordered_by_name_with_only_the_621_job_fields(sandbox: Sandbox) -> None:
    jobs = sandbox.get(f"{P}/builds/{SEED.failed_build}/jobs").json()

    assert [(job["name"], job["state"]) for job in jobs] == [
        ("Create Jobs", "finished"),
        ("build", "finished"),
        ("deploy", "skipped"),
        ("test", "failure"),
    ]
    assert all(set(job) == JOB_KEYS for job in jobs)
    test = jobs[3]
    assert test["id"] == SEED.failed_test_job
    assert test["build_id"] == SEED.failed_build
    assert test["project_id"] == SEED.payments
    assert test["message"] == "Container exited with code 1"
    assert jobs[2]["message"] == "dependency not met: test ended in state failure"


def test_get_job_returns_the_same_job_object(sandbox: Sandbox) -> None:
    listed = sandbox.get(f"{P}/builds/{SEED.failed_build}/jobs").json()

    assert sandbox.get(f"{P}/jobs/{SEED.failed_test_job}").json() == listed[3]


def test_job_log_is_a_json_string_holding_the_whole_console(sandbox: Sandbox) -> None:
    response = sandbox.get(f"{P}/jobs/{SEED.failed_test_job}/log")

    assert response.headers["content-type"] == "application/json"
    log = response.json()
    assert isinstance(log, str)
    assert log.startswith("Starting job test\n")
    assert "FAILED tests/test_refunds.py::test_partial_refund_rounds_half_even" in log
    assert "Authorization: Bearer ib_mcp_" in log
    assert log.endswith("Job failed: Container exited with code 1\n")
    assert log.count("\n") > 20


def test_a_deploy_log_carries_a_fake_aws_key_for_masking_demos(sandbox: Sandbox) -> None:
    deploy = sandbox.jobs(SEED.green_build)["deploy"]["id"]

    assert "AWS_ACCESS_KEY_ID=AKIA" in sandbox.get(f"{P}/jobs/{deploy}/log").json()


def test_with_archived_logs_a_finished_job_log_is_empty_as_upstream_621_answers(
    tmp_path: Path, fake_clock: FakeClock
) -> None:
    for archived in open_sandbox(tmp_path, fake_clock, archived_logs=True):
        finished = archived.get(f"{P}/jobs/{SEED.failed_test_job}/log").json()
        running = archived.get(f"{P}/jobs/{SEED.running_test_job}/log").json()

        assert finished == ""
        assert running.startswith("Starting job test\n")


def test_testruns_list_each_result_with_message_and_stack(sandbox: Sandbox) -> None:
    runs = sandbox.get(f"{P}/jobs/{SEED.unstable_test_job}/testruns").json()

    assert all(
        set(run) == {"state", "name", "suite", "duration", "message", "stack", "timestamp"} for run in runs
    )
    [failed] = [run for run in runs if run["state"] == "failure"]
    assert failed["name"] == "test_settlement_batch_closes_at_midnight_utc"
    assert failed["suite"] == "tests.test_settlement"
    assert "payments/settlement.py:112: in close" in failed["stack"]
    assert failed["timestamp"].count(":") == 2 and "T" not in failed["timestamp"]
    assert sum(run["state"] == "ok" for run in runs) == 4


def test_stats_are_the_jobs_resource_series_or_an_empty_object(sandbox: Sandbox) -> None:
    test = sandbox.jobs(SEED.green_build)["test"]["id"]

    assert sandbox.get(f"{P}/jobs/{test}/stats").json() == {
        "cpu": [12.5, 88.0, 93.4, 71.2, 20.3],
        "mem": [180, 512, 640, 655, 410],
    }
    assert sandbox.get(f"{P}/jobs/{SEED.failed_build_job}/stats").json() == {}


@pytest.mark.parametrize(
    "path",
    [
        f"{P}/builds/{SEED.frontend_running_build}",
        f"{P}/builds/{SEED.frontend_running_build}/jobs",
        f"{P}/builds/00000000-0000-4000-8000-000000000000",
        f"{P}/jobs/{SEED.frontend_e2e_job}",
        f"{P}/jobs/{SEED.frontend_e2e_job}/log",
        f"{P}/jobs/00000000-0000-4000-8000-000000000000/testruns",
    ],
)
def test_an_id_unknown_in_the_project_answers_404_with_flasks_text(sandbox: Sandbox, path: str) -> None:
    response = sandbox.get(path)

    assert response.status_code == 404
    assert response.json() == NOT_FOUND


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/projects/not-a-uuid"),
        ("GET", "/projects/1234/builds"),
        ("GET", f"{P}/builds/not-a-uuid"),
        ("GET", f"{P}/builds/{SEED.failed_build}x/jobs"),
        ("GET", f"{P}/jobs/%27%3B%20DROP%20TABLE%20job"),
        ("GET", f"{P}/jobs/12345678-1234-1234-1234-12345678901/log"),
        ("POST", f"{P}/builds/not-a-uuid/restart"),
        ("DELETE", f"{P}/jobs/not-a-uuid/abort"),
        ("POST", f"{P}/jobs/zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz/rerun"),
    ],
)
def test_a_malformed_id_answers_404_never_500(sandbox: Sandbox, method: str, path: str) -> None:
    response = sandbox.request(method, path)

    assert response.status_code == 404
    assert response.json() == NOT_FOUND


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/projects"),
        ("DELETE", P),
        ("PUT", f"{P}/builds"),
        ("GET", f"{P}/builds/{SEED.failed_build}/restart"),
        ("POST", f"{P}/builds/{SEED.running_build}/abort"),
        ("GET", f"{P}/jobs/{SEED.failed_test_job}/rerun"),
        ("DELETE", f"{P}/jobs/{SEED.failed_test_job}/restart"),
        ("POST", f"{P}/jobs/{SEED.running_test_job}/abort"),
    ],
)
def test_a_wrong_method_answers_405_with_flasks_text(sandbox: Sandbox, method: str, path: str) -> None:
    response = sandbox.request(method, path)

    assert response.status_code == 405
    assert response.json() == {"message": "The method is not allowed for the requested URL."}
    assert sandbox.rows("SELECT COUNT(*) AS n FROM abort")[0]["n"] == 0


def test_a_path_outside_the_namespace_answers_404_json(sandbox: Sandbox) -> None:
    response = sandbox.client.get("/api/v1/projects")

    assert response.status_code == 404
    assert response.json() == NOT_FOUND
