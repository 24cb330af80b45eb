"""Which of restart, rerun and abort InfraBox would accept on a job right now.

The rules mirror upstream's own checks, so an agent can learn that a call would be refused before it
spends a slot of the shared trigger budget on it. Each verdict is "yes", "no" or "unknown". One failed
check is enough for upstream to refuse, so a definite "no" from what is known wins over an "unknown"
from what is missing (InfraBox's #621 job objects carry no type, restarted flag or dependencies).
"""

from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from mcp_ci_tools.domain.states import ACTIVE_STATES, JOB_STATES, RESTARTABLE_STATES, TERMINAL_STATES

__all__ = [
    "JOB_TYPES",
    "RESTARTABLE_TYPES",
    "JobActions",
    "Verdict",
    "downstream_of",
    "possible_actions",
]

Verdict = Literal["yes", "no", "unknown"]

RESTARTABLE_TYPES = frozenset({"run_project_container", "run_docker_compose"})
JOB_TYPES = RESTARTABLE_TYPES | {"create_job_matrix", "wait"}

# Upstream lets a job restart while its dependents are still queued: their clones replace them.
_BUSY_DEPENDENT_STATES = frozenset({"scheduled", "running"})


class JobActions(BaseModel):
    """Whether InfraBox would accept each write action on one job now, and why not."""

    model_config = ConfigDict(frozen=True)

    restart: Verdict = Field(description="restart_job: clones the job and its downstream jobs")
    rerun: Verdict = Field(description="rerun_job: clones only this job")
    abort: Verdict = Field(description="abort_job: asks the scheduler to kill the job")
    reasons: dict[str, str] = Field(
        default_factory=dict,
        description="for each action that is not 'yes', why it is refused or cannot be decided",
    )


def possible_actions(
    state: str,
    *,
    job_type: str | None = None,
    restarted: bool | None = None,
    dependents_states: Sequence[str] | None = None,
    parent_states: Sequence[str] | None = None,
) -> JobActions:
    """Decide restart, rerun and abort for a job; None for an input means upstream did not say.

    `dependents_states` are the states of all downstream dependents (transitively, see `downstream_of`);
    `parent_states` those of the job's direct parents.
    """
    verdicts: dict[str, Verdict] = {}
    reasons: dict[str, str] = {}
    for action, (refusals, missing) in {
        "restart": _restart_checks(state, job_type, restarted, dependents_states),
        "rerun": _rerun_checks(state, job_type, restarted, parent_states),
        "abort": _abort_checks(state),
    }.items():
        verdict, reason = _decide(refusals, missing)
        verdicts[action] = verdict
        if reason is not None:
            reasons[action] = reason
    return JobActions(
        restart=verdicts["restart"], rerun=verdicts["rerun"], abort=verdicts["abort"], reasons=reasons
    )


def downstream_of(job_id: object, jobs: Iterable[Mapping[str, Any]]) -> list[str]:
    """Ids of every job that depends on `job_id`, directly or transitively, nearest first.

    `jobs` are InfraBox job objects with `id` and `dependencies` (`[{"job", "job-id", "on"}]`); jobs
    without dependencies and malformed entries are skipped. Ids are compared as strings, and a cycle
    in the dependencies is walked once.
    """
    children: dict[str, list[str]] = {}
    for job in jobs:
        child = job.get("id")
        if child is None:
            continue
        for dependency in job.get("dependencies") or ():
            parent = dependency.get("job-id") if isinstance(dependency, Mapping) else None
            if parent is not None:
                children.setdefault(str(parent), []).append(str(child))

    start = str(job_id)
    seen = {start}
    found: list[str] = []
    pending = deque([start])
    while pending:
        for child in children.get(pending.popleft(), ()):
            if child not in seen:
                seen.add(child)
                found.append(child)
                pending.append(child)
    return found


_Checks = tuple[list[str], list[str]]


def _restart_checks(
    state: str, job_type: str | None, restarted: bool | None, dependents_states: Sequence[str] | None
) -> _Checks:
    refusals, missing = _own_checks(state, job_type, restarted, verb="restarted")
    if dependents_states is None:
        missing.append("the states of its downstream jobs")
    elif any(dependent in _BUSY_DEPENDENT_STATES for dependent in dependents_states):
        refusals.append("some dependent jobs are still running; wait for them or abort them first")
    elif unrecognized := _unrecognized(dependents_states):
        missing.append(f"recognized states for its downstream jobs (got {unrecognized})")
    return refusals, missing


def _rerun_checks(
    state: str, job_type: str | None, restarted: bool | None, parent_states: Sequence[str] | None
) -> _Checks:
    refusals, missing = _own_checks(state, job_type, restarted, verb="rerun")
    if parent_states is None:
        missing.append("the states of its parent jobs")
    elif any(parent in ACTIVE_STATES for parent in parent_states):
        refusals.append("parent job is still running; wait until its parents have finished")
    elif unrecognized := _unrecognized(parent_states):
        missing.append(f"recognized states for its parent jobs (got {unrecognized})")
    return refusals, missing


def _own_checks(state: str, job_type: str | None, restarted: bool | None, *, verb: str) -> _Checks:
    refusals: list[str] = []
    missing: list[str] = []
    if state not in JOB_STATES:
        missing.append(f"a recognized job state (got {state!r})")
    elif state not in RESTARTABLE_STATES:
        refusals.append(f"job in state {state} cannot be {verb}")
    if job_type is None:
        missing.append("the job type")
    elif job_type not in RESTARTABLE_TYPES:
        refusals.append(
            f"job type {job_type} cannot be {verb}; only run_project_container and run_docker_compose jobs can"
        )
    if restarted is None:
        missing.append("whether the job was already restarted")
    elif restarted:
        refusals.append(
            "job has already been restarted; act on its newest clone (same name with a .N suffix) instead"
        )
    return refusals, missing


def _abort_checks(state: str) -> _Checks:
    if state not in JOB_STATES:
        return [], [f"a recognized job state (got {state!r})"]
    if state in TERMINAL_STATES:
        return [f"job already ended in state {state}; InfraBox accepts an abort but nothing happens"], []
    return [], []


def _decide(refusals: list[str], missing: list[str]) -> tuple[Verdict, str | None]:
    if refusals:
        return "no", refusals[0]
    if missing:
        return "unknown", f"cannot tell without {_and_list(missing)}"
    return "yes", None


def _unrecognized(states: Sequence[str]) -> str:
    return ", ".join(repr(state) for state in dict.fromkeys(states) if state not in JOB_STATES)


def _and_list(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]
