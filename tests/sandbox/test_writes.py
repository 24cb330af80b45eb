"""The five writes: their #621 bodies, what they insert, the rules that refuse them (400), and what the
scheduler then makes of them."""

from __future__ import annotations

import pytest

from mcp_ci_tools.sandbox import SEED

from .conftest import Job, Sandbox

P = f"/projects/{SEED.payments}"
FAIL = {"outcome": "failure", "message": "exit code 1"}


def refused(message: str) -> dict[str, object]:
    return {"message": message, "status": 400}


def names_and_states(sandbox: Sandbox, build_id: str) -> list[tuple[str, str]]:
    return [(job["name"], job["state"]) for job in sandbox.get(f"{P}/builds/{build_id}/jobs").json()]


def test_restart_build_creates_a_build_with_the_next_restart_counter_holding_a_queued_seed(
    sandbox: Sandbox,
) -> None:
    response = sandbox.post(f"{P}/builds/{SEED.failed_build}/restart")

    body = response.json()
    assert response.status_code == 200
    assert set(body) == {"build_id", "restart_counter"}
    assert body["restart_counter"] == 1
    new_build = sandbox.get(f"{P}/builds/{body['build_id']}").json()
    old_build = sandbox.get(f"{P}/builds/{SEED.failed_build}").json()
    assert (new_build["build_number"], new_build["commit_id"], new_build["branch"]) == (
        old_build["build_number"],
        old_build["commit_id"],
        old_build["branch"],
    )
    assert new_build["status"] == "running"
    [seed] = sandbox.jobs(body["build_id"]).values()
    assert (seed["name"], seed["type"], seed["state"]) == ("Create Jobs", "create_job_matrix", "queued")
    assert seed["console"] == "Build restarted by alice\n"


def test_restart_counter_is_the_highest_for_that_build_number_plus_one(sandbox: Sandbox) -> None:
    first = sandbox.post(f"{P}/builds/{SEED.failed_build}/restart").json()
    second = sandbox.post(f"{P}/builds/{SEED.failed_build}/restart").json()
    of_the_restart = sandbox.post(f"{P}/builds/{first['build_id']}/restart").json()

    assert [first["restart_counter"], second["restart_counter"], of_the_restart["restart_counter"]] == [
        1,
        2,
        3,
    ]
    listed = sandbox.get(f"{P}/builds", params={"branch": "feature/refund-api"}).json()
    assert [(build["build_number"], build["restart_counter"]) for build in listed] == [
        (42, 3),
        (42, 2),
        (42, 1),
        (42, 0),
    ]


def test_a_restarted_build_runs_its_original_jobs_again_when_the_seed_runs(sandbox: Sandbox) -> None:
    new_build = sandbox.post(f"{P}/builds/{SEED.failed_build}/restart").json()["build_id"]

    sandbox.scheduler.step()  # seed scheduled
    sandbox.scheduler.step()  # seed running
    sandbox.scheduler.step()  # seed finished: the matrix appears
    created = names_and_states(sandbox, new_build)
    sandbox.scheduler.run_until_idle()

    assert created == [
        ("Create Jobs", "finished"),
        ("build", "queued"),
        ("deploy", "queued"),
        ("test", "queued"),
    ]
    jobs = sandbox.jobs(new_build)
    assert jobs["test"]["dependencies"] == [
        {"job": "build", "job-id": jobs["build"]["id"], "on": ["finished"]}
    ]
    assert jobs["deploy"]["dependencies"] == [
        {"job": "test", "job-id": jobs["test"]["id"], "on": ["finished"]}
    ]
    assert "Created 3 job(s): build, test, deploy" in jobs["Create Jobs"]["console"]
    # the seeded test is flaky: it passes on the restarted build, so the whole build turns green
    assert names_and_states(sandbox, new_build) == [
        ("Create Jobs", "finished"),
        ("build", "finished"),
        ("deploy", "finished"),
        ("test", "finished"),
    ]
    assert sandbox.get(f"{P}/builds/{new_build}").json()["status"] == "finished"
    assert sandbox.get(f"{P}/builds/{SEED.failed_build}").json()["status"] == "failure"


def test_a_running_build_can_be_restarted(sandbox: Sandbox) -> None:
    response = sandbox.post(f"{P}/builds/{SEED.running_build}/restart")

    assert response.status_code == 200


def test_a_build_without_a_seed_job_cannot_be_restarted_and_the_answer_is_a_400(sandbox: Sandbox) -> None:
    build_id, _ = sandbox.add_build([Job("build", "failure")], with_seed=False)

    response = sandbox.post(f"{P}/builds/{build_id}/restart")

    assert response.status_code == 400
    assert response.json() == refused("build has no Create Jobs seed job and cannot be restarted")
    assert (
        sandbox.rows(
            "SELECT COUNT(*) AS n FROM build WHERE build_number = (SELECT build_number FROM build WHERE id = ?)",
            build_id,
        )[0]["n"]
        == 1
    )


def test_abort_build_inserts_an_abort_row_for_every_job_finished_ones_included(sandbox: Sandbox) -> None:
    response = sandbox.delete(f"{P}/builds/{SEED.running_build}/abort")

    assert response.status_code == 200
    assert response.json() == {"message": "Aborted all jobs", "jobs_aborted": 4}
    rows = sandbox.rows("SELECT job_id, user_id, processed_at FROM abort ORDER BY job_id")
    assert [row["job_id"] for row in rows] == sorted(
        job["id"] for job in sandbox.jobs(SEED.running_build).values()
    )
    assert {row["user_id"] for row in rows} == {sandbox.user_id("alice")}
    assert {row["processed_at"] for row in rows} == {None}


def test_abort_is_asynchronous_the_scheduler_kills_the_active_jobs_only(sandbox: Sandbox) -> None:
    sandbox.delete(f"{P}/builds/{SEED.running_build}/abort")
    before = names_and_states(sandbox, SEED.running_build)

    sandbox.scheduler.step()

    assert before == [
        ("Create Jobs", "finished"),
        ("build", "finished"),
        ("deploy", "queued"),
        ("test", "running"),
    ]
    jobs = sandbox.get(f"{P}/builds/{SEED.running_build}/jobs").json()
    assert [(job["name"], job["state"], job["message"]) for job in jobs] == [
        ("Create Jobs", "finished", None),
        ("build", "finished", None),
        ("deploy", "killed", "Aborted by alice"),
        ("test", "killed", "Aborted by alice"),
    ]
    assert jobs[3]["end_date"] is not None
    build = sandbox.get(f"{P}/builds/{SEED.running_build}").json()
    assert (build["status"], build["finished_at"]) == ("killed", jobs[3]["end_date"])
    assert sandbox.rows("SELECT COUNT(*) AS n FROM abort WHERE processed_at IS NULL")[0]["n"] == 0


def test_abort_job_inserts_one_abort_row_and_the_scheduler_kills_that_job(sandbox: Sandbox) -> None:
    path = f"/projects/{SEED.frontend}/jobs/{SEED.frontend_e2e_job}"

    response = sandbox.delete(path + "/abort")
    rows = sandbox.rows("SELECT job_id FROM abort")
    sandbox.scheduler.step()

    assert response.json() == {"message": "Successfully aborted job"}
    assert rows == [{"job_id": SEED.frontend_e2e_job}]
    job = sandbox.get(path).json()
    assert (job["state"], job["message"]) == ("killed", "Aborted by alice")
    assert sandbox.get(path + "/log").json().endswith("Job aborted by alice\n")


def test_aborting_a_finished_job_is_accepted_and_changes_nothing(sandbox: Sandbox) -> None:
    response = sandbox.delete(f"{P}/jobs/{SEED.failed_test_job}/abort")
    sandbox.scheduler.step()

    assert response.status_code == 200
    assert sandbox.get(f"{P}/jobs/{SEED.failed_test_job}").json()["state"] == "failure"


def test_restart_job_clones_the_job_and_its_downstream_dependents_with_a_suffix(sandbox: Sandbox) -> None:
    response = sandbox.post(f"{P}/jobs/{SEED.failed_test_job}/restart")

    assert response.status_code == 200
    assert response.json() == {"message": "Successfully restarted job", "jobs_restarted": 2}
    jobs = sandbox.jobs(SEED.failed_build)
    assert {name: (job["state"], job["restarted"]) for name, job in jobs.items()} == {
        "Create Jobs": ("finished", 0),
        "build": ("finished", 0),
        "test": ("failure", 1),
        "deploy": ("skipped", 1),
        "test.1": ("queued", 0),
        "deploy.1": ("queued", 0),
    }
    assert jobs["test.1"]["dependencies"] == [
        {"job": "build", "job-id": SEED.failed_build_job, "on": ["finished"]}
    ]
    assert jobs["deploy.1"]["dependencies"] == [
        {"job": "test.1", "job-id": jobs["test.1"]["id"], "on": ["finished"]}
    ]
    assert jobs["test.1"]["type"] == "run_project_container"
    assert jobs["test.1"]["console"] == "Job restarted by alice\n"
    assert sandbox.get(f"{P}/builds/{SEED.failed_build}").json()["status"] == "running"


def test_restarted_clones_run_and_the_flaky_test_now_passes(sandbox: Sandbox) -> None:
    sandbox.post(f"{P}/jobs/{SEED.failed_test_job}/restart")

    sandbox.scheduler.run_until_idle()

    states = dict(names_and_states(sandbox, SEED.failed_build))
    assert (states["test.1"], states["deploy.1"]) == ("finished", "finished")
    assert sandbox.get(f"{P}/builds/{SEED.failed_build}").json()["status"] == "finished"
    clone = sandbox.jobs(SEED.failed_build)["test.1"]["id"]
    assert {run["state"] for run in sandbox.get(f"{P}/jobs/{clone}/testruns").json()} == {"ok"}


def test_restarting_a_clone_again_increments_its_suffix_and_rewires_the_new_clones(sandbox: Sandbox) -> None:
    build_id, ids = sandbox.add_build(
        [
            Job("build", "finished"),
            Job("test", "failure", (("build", ["finished"]),), definition=FAIL),
            Job("deploy", "skipped", (("test", ["finished"]),)),
        ]
    )
    sandbox.post(f"{P}/jobs/{ids['test']}/restart")
    sandbox.scheduler.run_until_idle()
    first = sandbox.jobs(build_id)

    response = sandbox.post(f"{P}/jobs/{first['test.1']['id']}/restart")

    assert (first["test.1"]["state"], first["deploy.1"]["state"]) == ("failure", "skipped")
    assert response.json() == {"message": "Successfully restarted job", "jobs_restarted": 2}
    second = sandbox.jobs(build_id)
    assert (second["test.2"]["state"], second["deploy.2"]["state"]) == ("queued", "queued")
    assert second["test.2"]["dependencies"] == [{"job": "build", "job-id": ids["build"], "on": ["finished"]}]
    assert second["deploy.2"]["dependencies"] == [
        {"job": "test.2", "job-id": second["test.2"]["id"], "on": ["finished"]}
    ]


def test_restart_job_clones_a_whole_diamond_and_rewires_every_dependency(sandbox: Sandbox) -> None:
    build_id, ids = sandbox.add_build(
        [
            Job("compile", "finished"),
            Job("unit", "finished", (("compile", ["finished"]),)),
            Job("lint", "failure", (("compile", ["finished"]),)),
            Job("release", "skipped", (("unit", ["finished"]), ("lint", ["finished"]))),
            Job("docs", "finished"),
        ]
    )

    response = sandbox.post(f"{P}/jobs/{ids['compile']}/restart")

    assert response.json()["jobs_restarted"] == 4
    jobs = sandbox.jobs(build_id)
    assert sorted(name for name, job in jobs.items() if not job["restarted"]) == [
        "Create Jobs",
        "compile.1",
        "docs",
        "lint.1",
        "release.1",
        "unit.1",
    ]
    assert jobs["release.1"]["dependencies"] == [
        {"job": "unit.1", "job-id": jobs["unit.1"]["id"], "on": ["finished"]},
        {"job": "lint.1", "job-id": jobs["lint.1"]["id"], "on": ["finished"]},
    ]
    assert jobs["unit.1"]["dependencies"][0]["job-id"] == jobs["compile.1"]["id"]


def test_rerun_job_clones_only_that_job_and_dependents_stay_skipped(sandbox: Sandbox) -> None:
    response = sandbox.post(f"{P}/jobs/{SEED.unstable_test_job}/rerun")
    sandbox.scheduler.run_until_idle()

    body = response.json()
    assert response.status_code == 200
    assert set(body) == {"message", "new_job_id"}
    assert body["message"] == "Successfully rerun job"
    jobs = sandbox.jobs(SEED.unstable_build)
    assert body["new_job_id"] == jobs["test.1"]["id"]
    assert sorted(jobs) == ["Create Jobs", "build", "deploy", "test", "test.1"]
    assert (jobs["test"]["restarted"], jobs["deploy"]["restarted"]) == (1, 0)
    assert (jobs["test.1"]["state"], jobs["deploy"]["state"]) == ("finished", "skipped")
    assert jobs["test.1"]["dependencies"] == [
        {"job": "build", "job-id": jobs["build"]["id"], "on": ["finished"]}
    ]


@pytest.mark.parametrize("verb", ["restart", "rerun"])
def test_a_running_job_cannot_be_restarted_or_rerun(sandbox: Sandbox, verb: str) -> None:
    response = sandbox.post(f"{P}/jobs/{SEED.running_test_job}/{verb}")

    assert response.status_code == 400
    assert response.json() == refused(
        f"job in state running cannot be {verb}{'ed' if verb == 'restart' else ''}"
    )


@pytest.mark.parametrize("state", ["queued", "scheduled"])
def test_an_active_job_cannot_be_restarted(sandbox: Sandbox, state: str) -> None:
    _, ids = sandbox.add_build([Job("test", state)])

    response = sandbox.post(f"{P}/jobs/{ids['test']}/restart")

    assert response.json() == refused(f"job in state {state} cannot be restarted")


@pytest.mark.parametrize(("verb", "word"), [("restart", "restarted"), ("rerun", "rerun")])
def test_only_run_jobs_can_be_restarted_or_rerun(sandbox: Sandbox, verb: str, word: str) -> None:
    _, ids = sandbox.add_build([Job("approve", "finished", type="wait")])

    seed_job = sandbox.post(f"{P}/jobs/{SEED.failed_seed_job}/{verb}")
    wait_job = sandbox.post(f"{P}/jobs/{ids['approve']}/{verb}")

    assert seed_job.json() == wait_job.json() == refused(f"job type cannot be {word}")


def test_a_docker_compose_job_can_be_restarted(sandbox: Sandbox) -> None:
    _, ids = sandbox.add_build([Job("e2e", "killed", type="run_docker_compose")])

    assert sandbox.post(f"{P}/jobs/{ids['e2e']}/restart").status_code == 200


@pytest.mark.parametrize("first", ["restart", "rerun"])
@pytest.mark.parametrize("second", ["restart", "rerun"])
def test_a_job_that_was_already_restarted_or_rerun_is_refused(
    sandbox: Sandbox, first: str, second: str
) -> None:
    sandbox.post(f"{P}/jobs/{SEED.failed_test_job}/{first}")

    response = sandbox.post(f"{P}/jobs/{SEED.failed_test_job}/{second}")

    assert response.json() == refused("job has already been restarted")
    assert sorted(sandbox.jobs(SEED.failed_build)).count("test.1") == 1


@pytest.mark.parametrize("dependent_state", ["running", "scheduled"])
def test_restart_job_is_refused_while_a_dependent_is_still_active(
    sandbox: Sandbox, dependent_state: str
) -> None:
    build_id, ids = sandbox.add_build(
        [
            Job("build", "finished"),
            Job("test", "finished", (("build", ["finished"]),)),
            Job("deploy", dependent_state, (("test", ["finished"]),)),
        ]
    )

    response = sandbox.post(f"{P}/jobs/{ids['build']}/restart")

    assert response.json() == refused("some dependent jobs are still running")
    assert [job["restarted"] for job in sandbox.jobs(build_id).values()] == [0] * len(sandbox.jobs(build_id))


def test_restart_job_accepts_queued_dependents_and_the_queued_originals_never_run(sandbox: Sandbox) -> None:
    build_id, ids = sandbox.add_build(
        [Job("build", "failure", definition=FAIL), Job("test", "queued", (("build", ["failure"]),))]
    )

    response = sandbox.post(f"{P}/jobs/{ids['build']}/restart")
    sandbox.scheduler.run_until_idle()

    assert response.json()["jobs_restarted"] == 2
    jobs = sandbox.jobs(build_id)
    assert (jobs["test"]["state"], jobs["test"]["message"]) == (
        "skipped",
        "superseded by its restarted clone",
    )
    assert (jobs["build.1"]["state"], jobs["test.1"]["state"]) == ("failure", "finished")


def test_rerun_job_is_refused_while_a_parent_is_still_active(sandbox: Sandbox) -> None:
    _, ids = sandbox.add_build([Job("build", "running"), Job("test", "failure", (("build", ["finished"]),))])

    response = sandbox.post(f"{P}/jobs/{ids['test']}/rerun")

    assert response.json() == refused("parent job is still running")


def test_a_skipped_job_cannot_be_rerun(sandbox: Sandbox) -> None:
    response = sandbox.post(f"{P}/jobs/{SEED.skipped_deploy_job}/rerun")

    assert response.json() == refused("job in state skipped cannot be rerun")


def test_a_refused_write_inserts_nothing(sandbox: Sandbox) -> None:
    before = sandbox.rows("SELECT id, state, restarted FROM job ORDER BY id")

    sandbox.post(f"{P}/jobs/{SEED.running_test_job}/restart")
    sandbox.post(f"{P}/jobs/{SEED.skipped_deploy_job}/rerun")
    sandbox.post(f"{P}/jobs/{SEED.failed_seed_job}/restart")

    assert sandbox.rows("SELECT id, state, restarted FROM job ORDER BY id") == before
