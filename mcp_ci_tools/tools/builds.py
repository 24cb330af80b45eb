"""Build tools: restart_build and abort_build."""

from mcp.server import MCPServer
from mcp.types import ToolAnnotations
from pydantic import BaseModel, Field

from mcp_ci_tools.client import InfraBoxClient
from mcp_ci_tools.tools._confirm import build_resolver, outcome_of
from mcp_ci_tools.tools._deps import Deps
from mcp_ci_tools.tools._models import BudgetOut, BuildId, ProjectId, replay_note
from mcp_ci_tools.tools._write import run_trigger

__all__ = ["AbortBuildResult", "RestartBuildResult", "register"]


class RestartBuildResult(BaseModel):
    project_id: str
    build_id: str = Field(description="the build that was restarted")
    new_build_id: str | None = Field(description="the new build InfraBox created, when it said")
    restart_counter: int | None = Field(description="the new build's restart counter (same build number)")
    infrabox_message: str | None
    request_id: str = Field(description="X-Request-ID sent to InfraBox, also in the audit log")
    trigger_budget: BudgetOut
    replayed: bool = Field(description="not sent again: the answer of an identical call moments ago")
    next_step: str


class AbortBuildResult(BaseModel):
    project_id: str
    build_id: str
    jobs_aborted: int | None = Field(description="abort requests InfraBox recorded, finished jobs included")
    asynchronous: bool = Field(description="always true: jobs are killed later by InfraBox's scheduler")
    infrabox_message: str | None
    request_id: str
    trigger_budget: BudgetOut
    replayed: bool = Field(description="not sent again: the answer of an identical call moments ago")
    next_step: str


def register(server: MCPServer, deps: Deps) -> None:
    @server.tool(
        name="restart_build",
        title="Restart InfraBox build",
        description=(
            "Restart a build: InfraBox creates a new build (same number and commit, restart_counter + 1) whose "
            "jobs all run again; the old build stays. Works on running builds too. To re-run only failed jobs use "
            "restart_job or rerun_job."
        ),
        annotations=ToolAnnotations(
            title="Restart InfraBox build",
            read_only_hint=False,
            destructive_hint=False,
            idempotent_hint=False,
            open_world_hint=True,
        ),
    )
    async def restart_build(
        project_id: ProjectId,
        build_id: BuildId,
        confirmation: build_resolver(deps, "restart_build", "restart"),  # type: ignore[valid-type]
    ) -> RestartBuildResult:
        done = await run_trigger(
            deps,
            tool="restart_build",
            action="restart",
            kind="build",
            project_id=project_id,
            target_id=build_id,
            confirmation=outcome_of(confirmation),
            send=InfraBoxClient.restart_build,
        )
        answer = done.answer
        if answer.new_build_id:
            counter = (
                f" (restart_counter {answer.restart_counter})" if answer.restart_counter is not None else ""
            )
            next_step = (
                f"InfraBox created build {answer.new_build_id}{counter} with a queued seed job; its jobs appear "
                f"once the seed runs. Follow it with get_build(project_id, '{answer.new_build_id}'); "
                "do not restart again while it runs."
            )
        else:
            next_step = (
                "InfraBox accepted the restart but did not return the new build's id. Find it with "
                "list_builds(project_id): it has the same build number and a higher restart_counter."
            )
        return RestartBuildResult(
            project_id=project_id,
            build_id=build_id,
            new_build_id=answer.new_build_id,
            restart_counter=answer.restart_counter,
            infrabox_message=answer.message,
            request_id=done.request_id,
            trigger_budget=BudgetOut.of(done.budget),
            replayed=done.replayed_after_s is not None,
            next_step=replay_note(done.replayed_after_s) + next_step,
        )

    @server.tool(
        name="abort_build",
        title="Abort InfraBox build",
        description=(
            "Abort a build: InfraBox's scheduler later kills its queued and running jobs (asynchronous; "
            "finished jobs stay). Check with get_build."
        ),
        annotations=ToolAnnotations(
            title="Abort InfraBox build",
            read_only_hint=False,
            destructive_hint=True,
            idempotent_hint=False,
            open_world_hint=True,
        ),
    )
    async def abort_build(
        project_id: ProjectId,
        build_id: BuildId,
        confirmation: build_resolver(deps, "abort_build", "abort"),  # type: ignore[valid-type]
    ) -> AbortBuildResult:
        done = await run_trigger(
            deps,
            tool="abort_build",
            action="abort",
            kind="build",
            project_id=project_id,
            target_id=build_id,
            confirmation=outcome_of(confirmation),
            send=InfraBoxClient.abort_build,
        )
        return AbortBuildResult(
            project_id=project_id,
            build_id=build_id,
            jobs_aborted=done.answer.jobs_aborted,
            asynchronous=True,
            infrabox_message=done.answer.message,
            request_id=done.request_id,
            trigger_budget=BudgetOut.of(done.budget),
            replayed=done.replayed_after_s is not None,
            next_step=replay_note(done.replayed_after_s)
            + (
                "Abort requested. InfraBox kills the build's active jobs asynchronously (state 'killed', message "
                "'Aborted by <user>'); finished jobs are unchanged. Confirm with get_build in a few seconds; "
                "do not abort again."
            ),
        )
