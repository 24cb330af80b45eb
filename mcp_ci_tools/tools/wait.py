"""wait_for_build: wait for a build to end without polling in a tight loop, within a client's call limit.

Many MCP clients cut a tool call at about 60 s, so a wait is bounded (`timeout_s`, default 45, at most
`MCP_CI_MAX_WAIT`): a build that has not ended by then comes back as a normal result with `ended: false`
and a `next_step` saying to call again. A red build comes back with each problem job's id and actions, so
the next call can be rerun_job or restart_job without a lookup.
"""

from __future__ import annotations

from typing import Annotated

from mcp.server.mcpserver import Context
from pydantic import Field

from mcp_ci_tools.policy import BudgetExhausted
from mcp_ci_tools.tools._args import BuildId, ProjectId
from mcp_ci_tools.tools._deps import Deps
from mcp_ci_tools.tools._host import ToolHost
from mcp_ci_tools.tools._read import ReadCall, read_annotations, run_read
from mcp_ci_tools.tools._waiting import NEEDS, WaitForBuildResult, conclude, look, poll_floor

__all__ = ["DEFAULT_TIMEOUT_S", "MAX_TIMEOUT_S", "WaitForBuildResult", "register"]

DEFAULT_TIMEOUT_S = 45  # under the ~60 s many clients allow a call, progress notifications or not
MAX_TIMEOUT_S = 1800  # the most an operator may allow (MCP_CI_MAX_WAIT)
_MAX_DELAY_S, _BACKOFF = 15.0, 1.5


def register(server: ToolHost, deps: Deps) -> None:
    @server.tool(
        name="wait_for_build",
        title="Wait for InfraBox build to end",
        description=(
            "Wait until a build ends (e.g. after restart_build), polling within the read budget and reporting "
            "progress. Returns the final state; when red, the failed jobs with ids and actions. At most "
            "timeout_s (default 45): a build still running comes back with ended false; call again."
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
        floor = poll_floor(deps)

        async def fetch(call: ReadCall) -> WaitForBuildResult:
            started = deps.clock()
            deadline = started + applied
            delay, polls, note, out_of_budget = floor, 0, None, False
            while True:
                last = await look(deps, call)
                polls += 1
                await ctx.report_progress(last.done, last.total, last.message)
                remaining = deadline - deps.clock()
                if last.ended or remaining <= 0:
                    break
                await deps.sleep(min(delay, remaining))
                delay = max(floor, min(delay * _BACKOFF, _MAX_DELAY_S))
                try:
                    await deps.read_budgets.reserve(call.key, NEEDS)
                except BudgetExhausted as exhausted:
                    out_of_budget = True
                    note = (
                        f"Stopped waiting: the '{exhausted.budget}' read budget is used up; "
                        f"call again in {exhausted.retry_after_s} s."
                    )
                    break
            if timeout_s != applied:
                clamp = f"timeout_s {timeout_s} was clamped to {applied}"
                limit = " (the server's limit, MCP_CI_MAX_WAIT)" if timeout_s > applied else ""
                note = f"{clamp}{limit}. " + (note or "")
            return conclude(
                deps, project_id, last, started=started, polls=polls, out_of_budget=out_of_budget, note=note
            )

        return await run_read(
            deps,
            tool="wait_for_build",
            kind="build",
            ids={"project_id": project_id, "build_id": build_id},
            needs=NEEDS,
            fetch=fetch,
            detail=lambda r: {"ended": r.ended, "polls": r.polls},
        )
