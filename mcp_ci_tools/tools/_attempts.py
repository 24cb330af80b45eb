"""Job attempts: a build's jobs grouped by the name their retries share, so "failed" means failed now.

InfraBox's job list includes restarted originals: restart_job and rerun_job clone a job as `name.1`
(`name.N` → `name.N+1`) and keep the original. A job is a retry of `base` when its name is `base.N` (only
digits after the last dot), a job named `base` is in the same build, and that job is not known to be
un-restarted (`restarted` false where upstream sends it). Attempts are ordered by suffix (the original is
0); the latest attempt decides the job's current state. get_build, diagnose_build and wait_for_build all
count and list through this module, so the three agree.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pydantic import BaseModel, Field

from mcp_ci_tools.client import Job
from mcp_ci_tools.domain.failure_kinds import clone_suffix
from mcp_ci_tools.domain.states import ACTIVE_STATES, PROBLEM_STATES
from mcp_ci_tools.tools._views import clip, problem_first

__all__ = [
    "ALL_COUNTS",
    "CURRENT_COUNTS",
    "HISTORY",
    "Attempt",
    "JobGroup",
    "JobHistory",
    "current_counts",
    "group_attempts",
    "histories",
    "recovered_names",
    "superseded_ids",
]

CURRENT_COUNTS = "jobs per state NOW: each job's latest attempt (a retried job counts once)"
ALL_COUNTS = "job rows per state, restarted originals included"
HISTORY = "each job that was retried (name.N clones): its attempts and its state now"


class Attempt(BaseModel):
    id: str
    name: str | None
    state: str = Field(description="'unknown' when InfraBox gave none")


class JobHistory(BaseModel):
    """One job name that ran more than once, its attempts oldest first."""

    name: str | None = Field(description="the original job's name (without the .N clone suffix)")
    current_state: str = Field(description="the latest attempt's state: the job's state now")
    current_job_id: str = Field(description="the latest attempt: the one to act on")
    recovered_on_retry: bool = Field(
        description="an earlier attempt failed (failure/error/unstable/killed) and the latest finished"
    )
    failed_attempts: int = Field(description="attempts that ended in failure, error, unstable or killed")
    attempts: list[Attempt]


@dataclass(frozen=True)
class JobGroup:
    """A job and its retries, oldest first."""

    name: str | None
    jobs: tuple[Job, ...]

    @property
    def latest(self) -> Job:
        return self.jobs[-1]

    @property
    def current_state(self) -> str:
        return self.latest.state or "unknown"

    @property
    def retried(self) -> bool:
        return len(self.jobs) > 1

    @property
    def failed_attempts(self) -> int:
        return sum(job.state in PROBLEM_STATES for job in self.jobs)

    @property
    def recovered(self) -> bool:
        return self.current_state == "finished" and any(j.state in PROBLEM_STATES for j in self.jobs[:-1])

    @property
    def failed_now(self) -> bool:
        return self.current_state in PROBLEM_STATES

    @property
    def active(self) -> bool:
        return self.current_state in ACTIVE_STATES

    def history(self) -> JobHistory:
        return JobHistory(
            name=clip(self.name, 200),
            current_state=clip(self.current_state, 40) or "unknown",
            current_job_id=self.latest.id,
            recovered_on_retry=self.recovered,
            failed_attempts=self.failed_attempts,
            attempts=[
                Attempt(id=j.id, name=clip(j.name, 200), state=clip(j.state, 40) or "unknown")
                for j in self.jobs
            ],
        )


def group_attempts(jobs: Sequence[Job]) -> list[JobGroup]:
    """The build's jobs by original name, attempts ordered by clone suffix; groups in problem-first order
    of their latest attempts."""
    by_name: dict[str, Job] = {}
    for job in jobs:
        if job.name is not None:
            by_name.setdefault(job.name, job)
    keyed: dict[str, list[tuple[int, Job]]] = {}
    loose: list[JobGroup] = []
    for job in jobs:
        if job.name is None:
            loose.append(JobGroup(None, (job,)))
            continue
        base, attempt = _origin(job.name, by_name)
        keyed.setdefault(base, []).append((attempt, job))
    groups = [
        JobGroup(base, tuple(job for _, job in sorted(attempts, key=lambda pair: pair[0])))
        for base, attempts in keyed.items()
    ]
    groups += loose
    order = {job.id: rank for rank, job in enumerate(problem_first([g.latest for g in groups]))}
    return sorted(groups, key=lambda g: order[g.latest.id])


def _origin(name: str, by_name: dict[str, Job]) -> tuple[str, int]:
    # Follow the suffix down to the original while each step is a job of the build: test.2 → test.
    split = clone_suffix(name)
    if split is None:
        return name, 0
    base, attempt = split
    original = by_name.get(base)
    if original is None or original.restarted is False:
        return name, 0
    return _origin(base, by_name)[0], attempt


def current_counts(groups: Iterable[JobGroup]) -> dict[str, int]:
    """Jobs per state counting only each job's latest attempt."""
    return dict(sorted(Counter(clip(g.current_state, 40) or "unknown" for g in groups).items()))


def histories(groups: Iterable[JobGroup]) -> list[JobHistory]:
    """The history of every job that ran more than once."""
    return [g.history() for g in groups if g.retried]


def recovered_names(groups: Iterable[JobGroup]) -> list[str]:
    return [clip(g.name, 200) or "?" for g in groups if g.recovered]


def superseded_ids(groups: Iterable[JobGroup]) -> set[str]:
    """Ids of attempts that have a newer attempt: InfraBox refuses to restart or rerun them."""
    return {job.id for g in groups for job in g.jobs[:-1]}
