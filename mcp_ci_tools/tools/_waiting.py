"""Waiting for a build, shared by `wait_for_build` (a bounded wait in one call) and its task (`_tasks`).

One `Look` is one read of the build and its jobs; `conclude` turns the last look into the tool's result, so
the synchronous call and the task answer with the same result for the same build.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, Field

from mcp_ci_tools.client import Build, Job
from mcp_ci_tools.domain.states import ACTIVE_STATES, TERMINAL_STATES
from mcp_ci_tools.domain.timestamps import epoch_seconds
from mcp_ci_tools.tools._attempts import (
    ALL_COUNTS,
    CURRENT_COUNTS,
    HISTORY,
    JobHistory,
    current_counts,
    group_attempts,
    histories,
    recovered_names,
)
from mcp_ci_tools.tools._deps import Deps
from mcp_ci_tools.tools._findings import ProblemJob, summarize
from mcp_ci_tools.tools._read import ReadCall, build_with_jobs
from mcp_ci_tools.tools._views import BuildView, JobView, clip, fit, job_views, state_counts

__all__ = ["NEEDS", "Look", "WaitForBuildResult", "conclude", "look", "poll_floor"]

NEEDS = {"list_builds": 1, "list_jobs": 1}  # what one look costs
_FIRST_DELAY_S = 2.0


class WaitForBuildResult(BaseModel):
    project_id: str
    build: BuildView
    state_counts: dict[str, int] = Field(description=CURRENT_COUNTS)
    all_attempts_state_counts: dict[str, int] = Field(description=ALL_COUNTS)
    jobs_total: int = Field(description="job rows, every attempt included")
    job_history: list[JobHistory] = Field(description=HISTORY)
    ended: bool = Field(description="every job reached a terminal state")
    timed_out: bool = Field(description="timeout_s passed before the build ended")
    waited_s: float
    polls: int
    running_s: float | None = Field(description="seconds since the build was created; null if unknown")
    failed_jobs: list[JobView] = Field(
        description="when the build ended red: each job failing now (latest attempt failure/error/unstable/"
        "killed), with its id and what rerun_job and restart_job would do"
    )
    summary: str | None = Field(description="the verdict when the build ended red or recovered on retry")
    next_step: str | None = Field(description="what to call next; null when the build ended green")
    note: str | None


@dataclass(frozen=True)
class Look:
    """The build and its jobs as one read saw them."""

    build: Build
    jobs: list[Job]

    @property
    def current(self) -> list[Job]:
        """Each job's latest attempt: a restarted original left queued never runs, and is not waited for."""
        return [group.latest for group in group_attempts(self.jobs)]

    @property
    def total(self) -> int:
        return len(self.current)

    @property
    def done(self) -> int:
        return sum(job.state in TERMINAL_STATES for job in self.current)

    @property
    def ended(self) -> bool:
        return bool(self.jobs) and not any(job.state in ACTIVE_STATES for job in self.current)

    @property
    def message(self) -> str:
        return f"{self.done} of {self.total} jobs ended; build {clip(self.build.status, 40)}"


async def look(deps: Deps, call: ReadCall) -> Look:
    """One read of the build and its jobs (its budget, `NEEDS`, is the caller's to reserve)."""
    build, page, _ = await build_with_jobs(deps, call)
    return Look(build=build, jobs=page.items)


def poll_floor(deps: Deps) -> float:
    """The shortest pause between looks: at most about half of the list_jobs bucket goes to waiting."""
    return max(_FIRST_DELAY_S, 2 * 60 / deps.read_budgets.buckets["list_jobs"].limit)


def conclude(
    deps: Deps,
    project_id: str,
    last: Look,
    *,
    started: float,
    polls: int,
    out_of_budget: bool,
    note: str | None,
) -> WaitForBuildResult:
    """The result of a wait whose last look was `last`."""
    jobs, ended = last.jobs, last.ended
    groups = group_attempts(jobs)
    counts = current_counts(groups)
    view = BuildView.of(last.build)
    summary, failed = None, []
    failing = [g for g in groups if g.failed_now]
    if ended and failing:
        failed = job_views([g.latest for g in failing], deps.clock(), build_jobs=jobs)
        problems = [
            ProblemJob(
                job=v,
                failed_tests=[],
                failed_tests_total=None,
                log_tail=None,
                log_note=None,
                attempts=g.history().attempts if g.retried else [],
            )
            for v, g in zip(failed, failing, strict=True)
        ]
        summary = summarize(view, counts, problems, len(jobs), recovered=recovered_names(groups))
    elif ended and (recovered := recovered_names(groups)):
        summary = summarize(view, counts, [], len(jobs), recovered=recovered)
    return WaitForBuildResult(
        project_id=project_id,
        build=view,
        state_counts=counts,
        all_attempts_state_counts=state_counts(jobs),
        jobs_total=len(jobs),
        job_history=fit(histories(groups), 20_000),
        ended=ended,
        timed_out=not ended and not out_of_budget,
        waited_s=round(deps.clock() - started, 1),
        polls=polls,
        running_s=_seconds_since(last.build.created_at, deps.clock()),
        failed_jobs=failed,
        summary=summary,
        next_step=_next_step(
            ended=ended,
            failed=bool(failed),
            out_of_budget=out_of_budget,
            done=last.done,
            total=last.total,
            limit=deps.max_wait_s,
        ),
        note=note.strip() if note else None,
    )


def _next_step(
    *, ended: bool, failed: bool, out_of_budget: bool, done: int, total: int, limit: int
) -> str | None:
    if ended:
        return (
            "Rerun or restart a job of failed_jobs (rerun_job / restart_job with its id; its actions say which "
            "is possible), or call diagnose_build for failed tests and log tails."
            if failed
            else None
        )
    if out_of_budget:
        return "Wait as the note says, then call wait_for_build again with the same ids."
    return (
        f"The build is still running ({done} of {total} jobs ended). Call wait_for_build again with the same "
        f"ids to keep waiting (up to {limit} s a call); nothing needs to be restarted."
    )


def _seconds_since(created_at: str | None, now: float) -> float | None:
    created = epoch_seconds(created_at)  # None for a date outside the calendar, too
    return None if created is None else round(max(0.0, now - created), 1)
