"""wait_for_build: wait for a build to end without polling in a tight loop."""

from __future__ import annotations

from typing import Annotated

from mcp.server.mcpserver import Context
from pydantic import BaseModel, Field

from mcp_ci_tools.domain.states import ACTIVE_STATES, PROBLEM_STATES, TERMINAL_STATES
from mcp_ci_tools.policy import BudgetExhausted
from mcp_ci_tools.tools._args import BuildId, ProjectId
from mcp_ci_tools.tools._deps import Deps
from mcp_ci_tools.tools._findings import ProblemJob, summarize
from mcp_ci_tools.tools._host import ToolHost
from mcp_ci_tools.tools._read import ReadCall, build_with_jobs, read_annotations, run_read
from mcp_ci_tools.tools._views import BuildView, clip, job_views, problem_first, state_counts

__all__ = ["MAX_TIMEOUT_S", "WaitForBuildResult", "register"]

MAX_TIMEOUT_S = 1800
_NEEDS = {"list_builds": 1, "list_jobs": 1}
_FIRST_DELAY_S, _MAX_DELAY_S, _BACKOFF = 2.0, 15.0, 1.5


class WaitForBuildResult(BaseModel):
    project_id: str
    build: BuildView
    state_counts: dict[str, int]
    jobs_total: int
    ended: bool = Field(description="every job reached a terminal state")
    timed_out: bool
    waited_s: float
    polls: int
    summary: str | None = Field(description="diagnose_build's verdict when the build ended red")
    note: str | None


def register(server: ToolHost, deps: Deps) -> None:
    @server.tool(
        name="wait_for_build",
        title="Wait for InfraBox build to end",
        description=(
            "Wait until a build ends (e.g. after restart_build), polling with backoff within the read budget and "
            "reporting progress (jobs done / jobs). Returns the final state, with diagnose_build's verdict when "
            "red. On timeout (timeout_s, 1..1800, default 600) it returns normally with timed_out true."
        ),
        annotations=read_annotations("Wait for InfraBox build"),
    )
    async def wait_for_build(
        project_id: ProjectId,
        build_id: BuildId,
        ctx: Context,
        timeout_s: Annotated[int, Field(description="seconds to wait at most (1..1800)")] = 600,
    ) -> WaitForBuildResult:
        applied = min(max(timeout_s, 1), MAX_TIMEOUT_S)
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
                    await deps.read_budgets.reserve(call.fingerprint, _NEEDS)
                except BudgetExhausted as exhausted:
                    out_of_budget = True
                    note = (
                        f"Stopped waiting: the '{exhausted.budget}' read budget is used up; "
                        f"call again in {exhausted.retry_after_s} s."
                    )
                    break
            counts = state_counts(jobs)
            view = BuildView.of(build)
            summary = None
            if ended and any(job.state in PROBLEM_STATES for job in jobs):
                problems = [
                    ProblemJob(job=v, failed_tests=[], failed_tests_total=None, log_tail=None, log_note=None)
                    for v in job_views(
                        [j for j in problem_first(jobs) if j.state in PROBLEM_STATES], deps.clock()
                    )
                ]
                summary = summarize(view, counts, problems, len(jobs))
            if timeout_s != applied:
                note = f"timeout_s {timeout_s} was clamped to {applied}. " + (note or "")
            return WaitForBuildResult(
                project_id=project_id,
                build=view,
                state_counts=counts,
                jobs_total=len(jobs),
                ended=ended,
                timed_out=not ended and not out_of_budget,
                waited_s=round(deps.clock() - started, 1),
                polls=polls,
                summary=summary,
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
