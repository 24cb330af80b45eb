"""wait_for_build: wait for a build to end without polling in a tight loop, within a client's call limit.

Many MCP clients cut a tool call at about 60 s, so a wait is bounded (`timeout_s`, default 45, at most
`MCP_CI_MAX_WAIT`): a build that has not ended by then comes back as a normal result with `ended: false`
and a `next_step` saying to call again. A red build comes back with each problem job's id and actions, so
the next call can be rerun_job or restart_job without a lookup.
"""

from __future__ import annotations

from typing import Annotated

from mcp.server.mcpserver import Context
from pydantic import BaseModel, Field

from mcp_ci_tools.domain.states import ACTIVE_STATES, PROBLEM_STATES, TERMINAL_STATES
from mcp_ci_tools.domain.timestamps import parse_timestamp
from mcp_ci_tools.policy import BudgetExhausted
from mcp_ci_tools.tools._args import BuildId, ProjectId
from mcp_ci_tools.tools._deps import Deps
from mcp_ci_tools.tools._findings import ProblemJob, summarize
from mcp_ci_tools.tools._host import ToolHost
from mcp_ci_tools.tools._read import ReadCall, build_with_jobs, read_annotations, run_read
from mcp_ci_tools.tools._views import BuildView, JobView, clip, job_views, problem_first, state_counts

__all__ = ["DEFAULT_TIMEOUT_S", "MAX_TIMEOUT_S", "WaitForBuildResult", "register"]

DEFAULT_TIMEOUT_S = 45  # under the ~60 s many clients allow a call, progress notifications or not
MAX_TIMEOUT_S = 1800  # the most an operator may allow (MCP_CI_MAX_WAIT)
_NEEDS = {"list_builds": 1, "list_jobs": 1}
_FIRST_DELAY_S, _MAX_DELAY_S, _BACKOFF = 2.0, 15.0, 1.5


class WaitForBuildResult(BaseModel):
    project_id: str
    build: BuildView
    state_counts: dict[str, int]
    jobs_total: int
    ended: bool = Field(description="every job reached a terminal state")
    timed_out: bool = Field(description="timeout_s passed before the build ended")
    waited_s: float
    polls: int
    running_s: float | None = Field(description="seconds since the build was created; null if unknown")
    failed_jobs: list[JobView] = Field(
        description="when the build ended red: each failed/error/unstable/killed job, with its id and what "
        "rerun_job and restart_job would do"
    )
    summary: str | None = Field(description="diagnose_build's verdict when the build ended red")
    next_step: str | None = Field(description="what to call next; null when the build ended green")
    note: str | None


def register(server: ToolHost, deps: Deps) -> None:
    @server.tool(
        name="wait_for_build",
        title="Wait for InfraBox build to end",
        description=(
            "Wait until a build ends (e.g. after restart_build), polling with backoff within the read budget and "
            "reporting progress (jobs done / jobs). Returns the final state; when red, the failed jobs with their "
            "ids and actions. Waits at most timeout_s (default 45); if the build is still running it returns "
            "normally with ended false and next_step: call it again."
        ),
        annotations=read_annotations("Wait for InfraBox build"),
    )
    async def wait_for_build(
        project_id: ProjectId,
        build_id: BuildId,
        ctx: Context,
        timeout_s: Annotated[
            int, Field(description="seconds to wait at most; clamped to 1..the server's limit (default 55)")
        ] = DEFAULT_TIMEOUT_S,
    ) -> WaitForBuildResult:
        applied = min(max(timeout_s, 1), deps.max_wait_s)
        # At most about half of the list_jobs bucket goes to waiting, so other reads keep working.
        floor = max(_FIRST_DELAY_S, 2 * 60 / deps.read_budgets.buckets["list_jobs"].limit)

        async def fetch(call: ReadCall) -> WaitForBuildResult:
            started = deps.clock()
            deadline = started + applied
            delay, polls, note, out_of_budget = floor, 0, None, False
            while True:
                build, page, _ = await build_with_jobs(deps, call)
                polls += 1
                jobs = page.items
                done = sum(job.state in TERMINAL_STATES for job in jobs)
                await ctx.report_progress(
                    done, len(jobs), f"{done} of {len(jobs)} jobs ended; build {clip(build.status, 40)}"
                )
                ended = bool(jobs) and not any(job.state in ACTIVE_STATES for job in jobs)
                remaining = deadline - deps.clock()
                if ended or remaining <= 0:
                    break
                await deps.sleep(min(delay, remaining))
                delay = max(floor, min(delay * _BACKOFF, _MAX_DELAY_S))
                try:
                    await deps.read_budgets.reserve(call.key, _NEEDS)
                except BudgetExhausted as exhausted:
                    out_of_budget = True
                    note = (
                        f"Stopped waiting: the '{exhausted.budget}' read budget is used up; "
                        f"call again in {exhausted.retry_after_s} s."
                    )
                    break
            counts = state_counts(jobs)
            view = BuildView.of(build)
            summary, failed = None, []
            if ended and any(job.state in PROBLEM_STATES for job in jobs):
                failed = job_views(
                    [j for j in problem_first(jobs) if j.state in PROBLEM_STATES],
                    deps.clock(),
                    build_jobs=jobs,
                )
                problems = [
                    ProblemJob(job=v, failed_tests=[], failed_tests_total=None, log_tail=None, log_note=None)
                    for v in failed
                ]
                summary = summarize(view, counts, problems, len(jobs))
            if timeout_s != applied:
                clamp = f"timeout_s {timeout_s} was clamped to {applied}"
                limit = " (the server's limit, MCP_CI_MAX_WAIT)" if timeout_s > applied else ""
                note = f"{clamp}{limit}. " + (note or "")
            done = sum(job.state in TERMINAL_STATES for job in jobs)
            return WaitForBuildResult(
                project_id=project_id,
                build=view,
                state_counts=counts,
                jobs_total=len(jobs),
                ended=ended,
                timed_out=not ended and not out_of_budget,
                waited_s=round(deps.clock() - started, 1),
                polls=polls,
                running_s=_seconds_since(build.created_at, deps.clock()),
                failed_jobs=failed,
                summary=summary,
                next_step=_next_step(
                    ended=ended,
                    failed=bool(failed),
                    out_of_budget=out_of_budget,
                    done=done,
                    total=len(jobs),
                    limit=deps.max_wait_s,
                ),
                note=note.strip() if note else None,
            )

        return await run_read(
            deps,
            tool="wait_for_build",
            kind="build",
            ids={"project_id": project_id, "build_id": build_id},
            needs=_NEEDS,
            fetch=fetch,
            detail=lambda r: {"ended": r.ended, "polls": r.polls},
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
    created = parse_timestamp(created_at)
    if created is None:
        return None
    try:
        return round(max(0.0, now - created.timestamp()), 1)
    except (OverflowError, OSError, ValueError):  # a date at the calendar's edge
        return None
