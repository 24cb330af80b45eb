"""Which actions InfraBox would accept on a job, per the contract's domain rules."""

import json
import uuid
from typing import Any

import pytest

from mcp_ci_tools.domain import actions, states
from mcp_ci_tools.domain.actions import (
    RESTARTABLE_TYPES,
    JobActions,
    downstream_of,
    possible_actions,
)

STATES = ["queued", "scheduled", "running", "finished", "failure", "error", "skipped", "killed", "unstable"]
TYPES = ["create_job_matrix", "run_project_container", "run_docker_compose", "wait", None]
RESTARTED = [True, False, None]


def _expected_verdict(state: str, job_type: str | None, restarted: bool | None, verb: str) -> tuple[str, str]:
    """The contract's rules, spelled out independently of the module, for a job with idle neighbours."""
    if state not in {"error", "failure", "finished", "killed", "unstable"}:
        return "no", f"job in state {state} cannot be {verb}"
    if job_type in {"create_job_matrix", "wait"}:
        return "no", f"job type {job_type} cannot be {verb}"
    if restarted is True:
        return "no", "job has already been restarted"
    missing = []
    if job_type is None:
        missing.append("the job type")
    if restarted is None:
        missing.append("whether the job was already restarted")
    if missing:
        return "unknown", "cannot tell without " + " and ".join(missing)
    return "yes", ""


@pytest.mark.parametrize("restarted", RESTARTED)
@pytest.mark.parametrize("job_type", TYPES)
@pytest.mark.parametrize("state", STATES)
def test_restart_follows_the_contract_for_every_state_type_and_restarted_flag(
    state: str, job_type: str | None, restarted: bool | None
) -> None:
    result = possible_actions(
        state,
        job_type=job_type,
        restarted=restarted,
        dependents_states=["queued"],
        parent_states=["finished"],
    )

    verdict, reason = _expected_verdict(state, job_type, restarted, "restarted")
    assert result.restart == verdict
    if verdict == "yes":
        assert "restart" not in result.reasons
    else:
        assert result.reasons["restart"].startswith(reason)


@pytest.mark.parametrize("restarted", RESTARTED)
@pytest.mark.parametrize("job_type", TYPES)
@pytest.mark.parametrize("state", STATES)
def test_rerun_follows_the_contract_for_every_state_type_and_restarted_flag(
    state: str, job_type: str | None, restarted: bool | None
) -> None:
    result = possible_actions(
        state,
        job_type=job_type,
        restarted=restarted,
        dependents_states=["running"],
        parent_states=["finished"],
    )

    verdict, reason = _expected_verdict(state, job_type, restarted, "rerun")
    assert result.rerun == verdict
    if verdict == "yes":
        assert "rerun" not in result.reasons
    else:
        assert result.reasons["rerun"].startswith(reason)


@pytest.mark.parametrize("restarted", RESTARTED)
@pytest.mark.parametrize("job_type", TYPES)
@pytest.mark.parametrize("state", STATES)
def test_abort_depends_only_on_whether_the_job_is_still_active(
    state: str, job_type: str | None, restarted: bool | None
) -> None:
    result = possible_actions(state, job_type=job_type, restarted=restarted)

    if state in {"queued", "scheduled", "running"}:
        assert result.abort == "yes"
        assert "abort" not in result.reasons
    else:
        assert result.abort == "no"
        assert result.reasons["abort"] == (
            f"job already ended in state {state}; InfraBox accepts an abort but nothing happens"
        )


def test_a_failed_run_job_with_idle_neighbours_can_be_restarted_and_rerun_but_not_aborted() -> None:
    result = possible_actions(
        "failure",
        job_type="run_project_container",
        restarted=False,
        dependents_states=["skipped", "queued"],
        parent_states=["finished"],
    )

    assert result == JobActions(
        restart="yes",
        rerun="yes",
        abort="no",
        reasons={
            "abort": "job already ended in state failure; InfraBox accepts an abort but nothing happens"
        },
    )


def test_a_running_job_of_unknown_type_is_refused_rather_than_unknown() -> None:
    result = possible_actions("running")

    assert result.restart == "no"
    assert result.rerun == "no"
    assert result.abort == "yes"
    assert result.reasons == {
        "restart": "job in state running cannot be restarted",
        "rerun": "job in state running cannot be rerun",
    }


def test_a_skipped_job_cannot_be_rerun_with_upstreams_wording() -> None:
    result = possible_actions("skipped", job_type="run_docker_compose", restarted=False, parent_states=[])

    assert result.rerun == "no"
    assert result.reasons["rerun"] == "job in state skipped cannot be rerun"


def test_a_wait_job_is_refused_naming_the_types_that_can_be_restarted() -> None:
    result = possible_actions(
        "finished", job_type="wait", restarted=False, dependents_states=[], parent_states=[]
    )

    assert result.reasons["restart"] == (
        "job type wait cannot be restarted; only run_project_container and run_docker_compose jobs can"
    )
    assert result.reasons["rerun"] == (
        "job type wait cannot be rerun; only run_project_container and run_docker_compose jobs can"
    )


def test_an_already_restarted_job_points_the_agent_to_its_clone() -> None:
    result = possible_actions(
        "failure", job_type="run_project_container", restarted=True, dependents_states=[], parent_states=[]
    )

    assert result.restart == result.rerun == "no"
    assert result.reasons["restart"] == (
        "job has already been restarted; act on its newest clone (same name with a .N suffix) instead"
    )


def test_missing_inputs_make_restart_and_rerun_unknown_and_name_what_is_missing() -> None:
    result = possible_actions("error")

    assert (result.restart, result.rerun, result.abort) == ("unknown", "unknown", "no")
    assert result.reasons["restart"] == (
        "cannot tell without the job type, whether the job was already restarted"
        " and the states of its downstream jobs"
    )
    assert result.reasons["rerun"] == (
        "cannot tell without the job type, whether the job was already restarted"
        " and the states of its parent jobs"
    )


@pytest.mark.parametrize("dependent_state", ["scheduled", "running"])
def test_restart_is_refused_while_a_dependent_is_scheduled_or_running(dependent_state: str) -> None:
    result = possible_actions(
        "failure",
        job_type="run_project_container",
        restarted=False,
        dependents_states=["finished", dependent_state],
        parent_states=[],
    )

    assert result.restart == "no"
    assert result.reasons["restart"] == (
        "some dependent jobs are still running; wait for them or abort them first"
    )
    assert result.rerun == "yes"


@pytest.mark.parametrize(
    "dependent_state", ["queued", "finished", "failure", "error", "skipped", "killed", "unstable"]
)
def test_restart_is_allowed_while_dependents_are_queued_or_terminal(dependent_state: str) -> None:
    result = possible_actions(
        "killed", job_type="run_docker_compose", restarted=False, dependents_states=[dependent_state]
    )

    assert result.restart == "yes"


def test_a_busy_dependent_refuses_restart_even_when_other_inputs_are_missing() -> None:
    result = possible_actions("failure", dependents_states=["running"])

    assert result.restart == "no"
    assert result.reasons["restart"].startswith("some dependent jobs are still running")


def test_an_unrecognized_dependent_state_makes_restart_unknown() -> None:
    result = possible_actions(
        "failure", job_type="run_project_container", restarted=False, dependents_states=["paused", "paused"]
    )

    assert result.restart == "unknown"
    assert (
        result.reasons["restart"]
        == "cannot tell without recognized states for its downstream jobs (got 'paused')"
    )


@pytest.mark.parametrize("parent_state", ["queued", "scheduled", "running"])
def test_rerun_is_refused_while_a_parent_is_active(parent_state: str) -> None:
    result = possible_actions(
        "failure",
        job_type="run_project_container",
        restarted=False,
        dependents_states=[],
        parent_states=["finished", parent_state],
    )

    assert result.rerun == "no"
    assert result.reasons["rerun"] == "parent job is still running; wait until its parents have finished"
    assert result.restart == "yes"


def test_rerun_ignores_dependents_and_restart_ignores_parents() -> None:
    result = possible_actions(
        "unstable",
        job_type="run_project_container",
        restarted=False,
        dependents_states=["running"],
        parent_states=["running"],
    )

    assert result.reasons == {
        "restart": "some dependent jobs are still running; wait for them or abort them first",
        "rerun": "parent job is still running; wait until its parents have finished",
        "abort": "job already ended in state unstable; InfraBox accepts an abort but nothing happens",
    }


def test_an_unrecognized_parent_state_makes_rerun_unknown() -> None:
    result = possible_actions(
        "failure", job_type="run_project_container", restarted=False, parent_states=["finished", "weird"]
    )

    assert result.rerun == "unknown"
    assert (
        result.reasons["rerun"] == "cannot tell without recognized states for its parent jobs (got 'weird')"
    )


def test_an_unknown_job_state_makes_every_action_unknown_unless_something_else_refuses() -> None:
    unknown_everywhere = possible_actions(
        "paused", job_type="run_project_container", restarted=False, dependents_states=[], parent_states=[]
    )
    refused_by_type = possible_actions("paused", job_type="wait", restarted=False)

    assert (unknown_everywhere.restart, unknown_everywhere.rerun, unknown_everywhere.abort) == (
        "unknown",
        "unknown",
        "unknown",
    )
    assert unknown_everywhere.reasons["abort"] == "cannot tell without a recognized job state (got 'paused')"
    assert (
        unknown_everywhere.reasons["restart"] == "cannot tell without a recognized job state (got 'paused')"
    )
    assert (refused_by_type.restart, refused_by_type.rerun, refused_by_type.abort) == ("no", "no", "unknown")


def test_an_unlisted_job_type_counts_as_known_and_not_restartable() -> None:
    result = possible_actions("failure", job_type="run_something_new", restarted=False, dependents_states=[])

    assert result.restart == "no"
    assert result.reasons["restart"].startswith("job type run_something_new cannot be restarted")


def test_job_actions_serialize_as_flat_json_an_agent_can_read() -> None:
    result = possible_actions("running", job_type="run_project_container", restarted=False)

    assert json.loads(result.model_dump_json()) == {
        "restart": "no",
        "rerun": "no",
        "abort": "yes",
        "reasons": {
            "restart": "job in state running cannot be restarted",
            "rerun": "job in state running cannot be rerun",
        },
    }


def test_the_state_and_type_sets_match_the_contract() -> None:
    assert frozenset({"queued", "scheduled", "running"}) == states.ACTIVE_STATES
    assert (
        frozenset({"finished", "failure", "error", "skipped", "killed", "unstable"}) == states.TERMINAL_STATES
    )
    assert frozenset({"error", "failure", "finished", "killed", "unstable"}) == states.RESTARTABLE_STATES
    assert frozenset({"run_project_container", "run_docker_compose"}) == RESTARTABLE_TYPES
    assert set(STATES) == states.JOB_STATES
    assert set(TYPES) - {None} == actions.JOB_TYPES


def _job(job_id: str, *parents: str) -> dict[str, object]:
    return {
        "id": job_id,
        "name": f"job-{job_id}",
        "dependencies": [
            {"job": f"job-{parent}", "job-id": parent, "on": ["finished"]} for parent in parents
        ],
    }


def test_downstream_of_follows_dependencies_transitively_nearest_first() -> None:
    jobs = [
        _job("seed"),
        _job("build", "seed"),
        _job("test", "build"),
        _job("lint", "seed"),
        _job("deploy", "test"),
    ]

    assert downstream_of("build", jobs) == ["test", "deploy"]
    assert downstream_of("seed", jobs) == ["build", "lint", "test", "deploy"]


def test_downstream_of_lists_a_job_reached_by_two_paths_once() -> None:
    jobs = [_job("a"), _job("b", "a"), _job("c", "a"), _job("d", "b", "c")]

    assert downstream_of("a", jobs) == ["b", "c", "d"]


def test_downstream_of_a_leaf_or_an_unknown_job_is_empty() -> None:
    jobs = [_job("a"), _job("b", "a")]

    assert downstream_of("b", jobs) == []
    assert downstream_of("missing", jobs) == []


def test_downstream_of_stops_at_cycles_and_never_lists_the_job_itself() -> None:
    jobs = [_job("a", "c"), _job("b", "a"), _job("c", "b"), _job("self", "self")]

    assert downstream_of("a", jobs) == ["b", "c"]
    assert downstream_of("self", jobs) == []


def test_downstream_of_skips_jobs_without_dependencies_or_with_malformed_entries() -> None:
    jobs: list[dict[str, Any]] = [
        {"id": "a"},
        {"id": "b", "dependencies": None},
        {"id": "c", "dependencies": [{"job": "a"}, "a", {"job-id": "a", "on": ["finished"]}]},
        {"dependencies": [{"job-id": "a"}]},
    ]

    assert downstream_of("a", jobs) == ["c"]


def test_downstream_of_compares_ids_as_strings() -> None:
    parent = uuid.UUID("11111111-2222-3333-4444-555555555555")
    jobs: list[dict[str, Any]] = [{"id": str(parent)}, _job("child", str(parent))]

    assert downstream_of(parent, jobs) == ["child"]
