"""The scheduler keeps the sandbox's CI alive: dependencies and their `on` conditions, durations on the fake
clock, logs, test results, aborts, seed jobs; stepped by hand here, by the app's lifespan for real."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from mcp_ci_tools.sandbox import SANDBOX_TOKENS, SEED, Scheduler, create_app, db

from .conftest import API, FakeClock, Job, Sandbox, bearer, open_sandbox

P = f"/projects/{SEED.payments}"
FAIL = {"outcome": "failure", "message": "exit code 2"}


@pytest.fixture
def slow_sandbox(tmp_path: Path, fake_clock: FakeClock) -> Iterator[Sandbox]:
    """Jobs take 30 s unless their definition says otherwise."""
    yield from open_sandbox(tmp_path, fake_clock, job_duration_s=30)


def states(sandbox: Sandbox, build_id: str) -> dict[str, str]:
    return {name: job["state"] for name, job in sandbox.jobs(build_id).items() if name != "Create Jobs"}


def test_a_job_moves_one_state_per_step(sandbox: Sandbox) -> None:
    build_id, _ = sandbox.add_build([Job("build")])

    seen: list[object] = []
    for _ in range(4):
        seen.append(sandbox.scheduler.step())
        seen.append(states(sandbox, build_id)["build"])

    assert seen == [1, "scheduled", 1, "running", 1, "finished", 0, "finished"]


def test_a_job_waits_for_all_its_parents_to_end(sandbox: Sandbox) -> None:
    build_id, _ = sandbox.add_build(
        [
            Job("compile"),
            Job("docs", definition={"duration_s": 5}),
            Job("package", needs=(("compile", ["finished"]), ("docs", ["finished"]))),
        ]
    )

    sandbox.scheduler.run_until_idle()
    waiting = states(sandbox, build_id)
    sandbox.clock.advance(5)
    sandbox.scheduler.run_until_idle()

    assert waiting == {"compile": "finished", "docs": "running", "package": "queued"}
    assert states(sandbox, build_id) == {"compile": "finished", "docs": "finished", "package": "finished"}


def test_a_job_whose_on_condition_is_not_met_is_skipped_with_the_reason(sandbox: Sandbox) -> None:
    build_id, _ = sandbox.add_build(
        [
            Job("build", definition=FAIL),
            Job("test", needs=(("build", ["finished"]),)),
            Job("deploy", needs=(("test", ["finished"]),)),
            Job("report-failure", needs=(("build", ["failure", "error"]),)),
        ]
    )

    sandbox.scheduler.run_until_idle()

    assert states(sandbox, build_id) == {
        "build": "failure",
        "test": "skipped",
        "deploy": "skipped",
        "report-failure": "finished",
    }
    jobs = sandbox.jobs(build_id)
    assert jobs["build"]["message"] == "exit code 2"
    assert jobs["test"]["message"] == "dependency not met: build ended in state failure"
    assert jobs["deploy"]["message"] == "dependency not met: test ended in state skipped"
    assert (jobs["test"]["start_date"], jobs["test"]["end_date"]) == (None, sandbox.clock())


def test_an_on_condition_can_accept_an_unstable_parent(sandbox: Sandbox) -> None:
    build_id, _ = sandbox.add_build(
        [
            Job("test", definition={"outcome": "unstable"}),
            Job("coverage", needs=(("test", ["finished", "unstable"]),)),
            Job("deploy", needs=(("test", ["finished"]),)),
        ]
    )

    sandbox.scheduler.run_until_idle()

    assert states(sandbox, build_id) == {"test": "unstable", "coverage": "finished", "deploy": "skipped"}


def test_a_job_runs_for_the_configured_duration_on_the_fake_clock(slow_sandbox: Sandbox) -> None:
    build_id, ids = slow_sandbox.add_build([Job("build")])
    slow_sandbox.scheduler.run_until_idle()
    started = slow_sandbox.clock()

    slow_sandbox.clock.advance(29.9)
    slow_sandbox.scheduler.step()
    still_running = states(slow_sandbox, build_id)["build"]
    slow_sandbox.clock.advance(0.1)
    slow_sandbox.scheduler.step()

    assert still_running == "running"
    job = slow_sandbox.jobs(build_id)["build"]
    assert (job["state"], job["start_date"], job["end_date"]) == ("finished", started, started + 30)
    api_job = slow_sandbox.get(f"{P}/jobs/{ids['build']}").json()
    assert api_job["start_date"] == "2027-01-15T08:00:00+00:00"
    assert api_job["end_date"] == "2027-01-15T08:00:30+00:00"


def test_a_definitions_duration_overrides_the_default(slow_sandbox: Sandbox) -> None:
    build_id, _ = slow_sandbox.add_build([Job("quick", definition={"duration_s": 0}), Job("default")])

    slow_sandbox.scheduler.run_until_idle()

    assert states(slow_sandbox, build_id) == {"quick": "finished", "default": "running"}


def test_a_running_job_prints_its_log_lines_as_time_passes(sandbox: Sandbox) -> None:
    lines = ["step 1/4", "step 2/4", "step 3/4", "step 4/4"]
    _, ids = sandbox.add_build([Job("build", definition={"duration_s": 10, "log": lines})])
    sandbox.scheduler.run_until_idle()
    log = f"{P}/jobs/{ids['build']}/log"

    at_start = sandbox.get(log).json()
    sandbox.clock.advance(5)
    sandbox.scheduler.step()
    halfway = sandbox.get(log).json()
    sandbox.clock.advance(5)
    sandbox.scheduler.step()

    assert at_start == "Starting job build\n"
    assert halfway == "Starting job build\nstep 1/4\nstep 2/4\n"
    assert sandbox.get(log).json() == "Starting job build\n" + "".join(f"{line}\n" for line in lines) + (
        "Job finished successfully\n"
    )


def test_an_unstable_job_writes_its_test_results_when_it_ends(sandbox: Sandbox) -> None:
    tests = [
        {"name": "test_ok", "suite": "unit", "state": "ok", "duration": 12},
        {
            "name": "test_rounding",
            "suite": "unit",
            "state": "failure",
            "duration": 40,
            "message": "AssertionError: 1 != 2",
            "stack": 'File "t.py", line 3, in test_rounding\n    assert 1 == 2',
        },
    ]
    _, ids = sandbox.add_build([Job("test", definition={"outcome": "unstable", "testruns": tests})])
    path = f"{P}/jobs/{ids['test']}"

    before = sandbox.get(path + "/testruns").json()
    sandbox.scheduler.run_until_idle()

    assert before == []
    assert sandbox.get(path).json()["state"] == "unstable"
    assert sandbox.get(path + "/testruns").json() == [
        {
            "state": "ok",
            "name": "test_ok",
            "suite": "unit",
            "duration": 12,
            "message": None,
            "stack": None,
            "timestamp": "2027-01-15 08:00:00",
        },
        {
            "state": "failure",
            "name": "test_rounding",
            "suite": "unit",
            "duration": 40,
            "message": "AssertionError: 1 != 2",
            "stack": 'File "t.py", line 3, in test_rounding\n    assert 1 == 2',
            "timestamp": "2027-01-15 08:00:00",
        },
    ]
    assert (
        sandbox.get(path + "/log")
        .json()
        .endswith("Job finished with 1 failed test(s) of 2: marking job unstable\n")
    )


def test_an_error_outcome_ends_the_job_in_error_with_its_message(sandbox: Sandbox) -> None:
    _, ids = sandbox.add_build([Job("lint", definition={"outcome": "error", "message": "OOMKilled"})])

    sandbox.scheduler.run_until_idle()

    job = sandbox.get(f"{P}/jobs/{ids['lint']}").json()
    assert (job["state"], job["message"]) == ("error", "OOMKilled")


def test_aborts_kill_queued_scheduled_and_running_jobs_and_leave_ended_ones(sandbox: Sandbox) -> None:
    build_id, _ = sandbox.add_build(
        [
            Job("a", "queued"),
            Job("b", "scheduled"),
            Job("c", "running"),
            Job("d", "finished"),
            Job("e", "failure"),
        ]
    )
    sandbox.delete(f"{P}/builds/{build_id}/abort", role="single_project")

    moved = sandbox.scheduler.step()

    assert moved == 3
    jobs = sandbox.jobs(build_id)
    assert {name: (job["state"], job["message"]) for name, job in jobs.items()} == {
        "Create Jobs": ("finished", None),
        "a": ("killed", "Aborted by carol"),
        "b": ("killed", "Aborted by carol"),
        "c": ("killed", "Aborted by carol"),
        "d": ("finished", None),
        "e": ("failure", None),
    }
    assert jobs["c"]["console"].endswith("Job aborted by carol\n")
    assert sandbox.scheduler.step() == 0
    assert (
        sandbox.rows("SELECT COUNT(*) AS n FROM abort WHERE processed_at = ?", sandbox.clock())[0]["n"] == 6
    )


def test_the_dependents_of_a_killed_job_are_skipped(sandbox: Sandbox) -> None:
    sandbox.delete(f"{P}/jobs/{SEED.running_test_job}/abort")

    sandbox.scheduler.run_until_idle()

    assert states(sandbox, SEED.running_build) == {"build": "finished", "test": "killed", "deploy": "skipped"}


def _queued_seed_build(sandbox: Sandbox, restart_counter: int) -> str:
    flaky = {**FAIL, "retry": {"outcome": "finished"}}
    matrix = [{"name": "test", "definition": flaky}, {"name": "deploy", "dependencies": [{"job": "test"}]}]
    with closing(db.connect(sandbox.db_path)) as conn:
        build_id = db.insert_build(
            conn, project_id=SEED.payments, build_number=99, restart_counter=restart_counter, created_at=0
        )
        db.insert_job(
            conn,
            build_id=build_id,
            project_id=SEED.payments,
            name="Create Jobs",
            type="create_job_matrix",
            created_at=0,
            definition={"jobs": matrix},
        )
    return build_id


@pytest.mark.parametrize(
    ("restart_counter", "expected"),
    [
        (0, {"test": "failure", "deploy": "skipped"}),
        (1, {"test": "finished", "deploy": "finished"}),
    ],
)
def test_a_seed_job_creates_its_matrix_and_a_restarted_build_runs_the_retry_definitions(
    sandbox: Sandbox, restart_counter: int, expected: dict[str, str]
) -> None:
    build_id = _queued_seed_build(sandbox, restart_counter)

    for _ in range(3):
        sandbox.scheduler.step()
    created = states(sandbox, build_id)
    sandbox.scheduler.run_until_idle()

    assert created == {"test": "queued", "deploy": "queued"}
    assert states(sandbox, build_id) == expected
    jobs = sandbox.jobs(build_id)
    assert jobs["deploy"]["dependencies"] == [
        {"job": "test", "job-id": jobs["test"]["id"], "on": ["finished"]}
    ]


def test_run_until_idle_returns_while_long_jobs_are_still_running(sandbox: Sandbox) -> None:
    steps = sandbox.scheduler.run_until_idle()

    assert steps == 0
    assert sandbox.get(f"{P}/jobs/{SEED.running_test_job}").json()["state"] == "running"


def test_the_app_steps_the_scheduler_at_start_up_when_it_runs_one(
    tmp_path: Path, fake_clock: FakeClock
) -> None:
    for sandbox in open_sandbox(tmp_path, fake_clock):
        sandbox.delete(f"{P}/builds/{SEED.running_build}/abort")
    db_path = str(tmp_path / "sandbox.sqlite3")
    app = create_app(db_path, clock=fake_clock, run_scheduler=True, tick_interval_s=3600)

    with TestClient(app) as client:
        job = client.get(
            f"{API}{P}/jobs/{SEED.running_test_job}", headers=bearer(SANDBOX_TOKENS["trigger"].token)
        )

    assert job.json()["state"] == "killed"


class _Stop(Exception):
    pass


def _sleeps(clock: FakeClock, times: int) -> tuple[list[float], Any]:
    waited: list[float] = []

    async def sleep(seconds: float) -> None:
        if len(waited) == times:
            raise _Stop
        waited.append(seconds)
        clock.advance(seconds)

    return waited, sleep


@pytest.mark.anyio
async def test_run_forever_steps_after_each_interval(sandbox: Sandbox) -> None:
    build_id, _ = sandbox.add_build([Job("build", definition={"duration_s": 1})])
    waited, sleep = _sleeps(sandbox.clock, times=4)

    with pytest.raises(_Stop):
        await sandbox.scheduler.run_forever(0.5, sleep=sleep)

    assert waited == [0.5, 0.5, 0.5, 0.5]
    assert states(sandbox, build_id) == {"build": "finished"}


@pytest.mark.anyio
async def test_run_forever_logs_a_failing_step_and_keeps_going(
    tmp_path: Path, fake_clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    broken = Scheduler(str(tmp_path / "missing" / "db.sqlite3"), clock=fake_clock)
    waited, sleep = _sleeps(fake_clock, times=2)

    with caplog.at_level(logging.ERROR), pytest.raises(_Stop):
        await broken.run_forever(1.0, sleep=sleep)

    assert waited == [1.0, 1.0]
    assert [record.message for record in caplog.records] == ["sandbox scheduler step failed"] * 2
