"""Job tools: restart_job, rerun_job and abort_job."""

from mcp.server import MCPServer
from mcp.types import ToolAnnotations
from pydantic import BaseModel, Field

from mcp_ci_tools.client import InfraBoxClient
from mcp_ci_tools.tools._confirm import job_resolver, outcome_of
from mcp_ci_tools.tools._deps import Deps
from mcp_ci_tools.tools._models import BudgetOut, JobId, ProjectId, replay_note
from mcp_ci_tools.tools._write import run_trigger

__all__ = ["AbortJobResult", "RerunJobResult", "RestartJobResult", "register"]


class RestartJobResult(BaseModel):
    project_id: str
    job_id: str = Field(description="the job that was restarted")
    jobs_restarted: int | None = Field(
        description="jobs InfraBox cloned: this job plus its downstream dependents"
    )
    new_job_ids: list[str] = Field(
        description="ids of the clones, where InfraBox returned them (often it does not)"
    )
    infrabox_message: str | None
    request_id: str
    trigger_budget: BudgetOut
    replayed: bool = Field(description="not sent again: the answer of an identical call moments ago")
    next_step: str


class RerunJobResult(BaseModel):
    project_id: str
    job_id: str = Field(description="the job that was rerun")
    new_job_id: str | None = Field(description="the clone InfraBox created, when it said")
    infrabox_message: str | None
    request_id: str
    trigger_budget: BudgetOut
    replayed: bool = Field(description="not sent again: the answer of an identical call moments ago")
    next_step: str


class AbortJobResult(BaseModel):
    project_id: str
    job_id: str
    accepted: bool = Field(description="InfraBox recorded the abort request")
    asynchronous: bool = Field(description="always true: the job is killed later by InfraBox's scheduler")
    infrabox_message: str | None
    request_id: str
    trigger_budget: BudgetOut
    replayed: bool = Field(description="not sent again: the answer of an identical call moments ago")
    next_step: str


def _restart_next_step(result_ids: list[str], count: int | None) -> str:
    how_many = f"{count} job(s)" if count is not None else "the job and its downstream jobs"
    ids = f" New job ids: {', '.join(result_ids)}." if result_ids else ""
    return (
        f"InfraBox queued clones of {how_many}, named with a .N suffix (e.g. 'test' → 'test.1'); the originals "
        f"are marked restarted.{ids} Follow them with get_build on the same build; do not restart the original "
        "again (InfraBox refuses a job that was already restarted)."
    )


def register(server: MCPServer, deps: Deps) -> None:
    @server.tool(
        name="restart_job",
        title="Restart InfraBox job and its downstream jobs",
        description=(
            "Restart a failed or finished job AND every job downstream of it: InfraBox clones them as new "
            "queued jobs (name.1) and marks the originals restarted. Only run_* jobs whose dependents are finished "
            "or queued. For this job alone use rerun_job."
        ),
        annotations=ToolAnnotations(
            title="Restart InfraBox job and downstream",
            read_only_hint=False,
            destructive_hint=False,
            idempotent_hint=False,
            open_world_hint=True,
        ),
    )
    async def restart_job(
        project_id: ProjectId,
        job_id: JobId,
        confirmation: job_resolver(deps, "restart_job", "restart"),  # type: ignore[valid-type]
    ) -> RestartJobResult:
        done = await run_trigger(
            deps,
            tool="restart_job",
            action="restart",
            kind="job",
            project_id=project_id,
            target_id=job_id,
            confirmation=outcome_of(confirmation),
            send=InfraBoxClient.restart_job,
        )
        answer = done.answer
        return RestartJobResult(
            project_id=project_id,
            job_id=job_id,
            jobs_restarted=answer.jobs_restarted,
            new_job_ids=answer.new_job_ids,
            infrabox_message=answer.message,
            request_id=done.request_id,
            trigger_budget=BudgetOut.of(done.budget),
            replayed=done.replayed_after_s is not None,
            next_step=replay_note(done.replayed_after_s)
            + _restart_next_step(answer.new_job_ids, answer.jobs_restarted),
        )

    @server.tool(
        name="rerun_job",
        title="Rerun one InfraBox job",
        description=(
            "Rerun ONE failed or finished job: InfraBox clones only it (name.1); jobs skipped because of it stay "
            "skipped (restart_job reruns those too). Its parents must not be running."
        ),
        annotations=ToolAnnotations(
            title="Rerun one InfraBox job",
            read_only_hint=False,
            destructive_hint=False,
            idempotent_hint=False,
            open_world_hint=True,
        ),
    )
    async def rerun_job(
        project_id: ProjectId,
        job_id: JobId,
        confirmation: job_resolver(deps, "rerun_job", "rerun"),  # type: ignore[valid-type]
    ) -> RerunJobResult:
        done = await run_trigger(
            deps,
            tool="rerun_job",
            action="rerun",
            kind="job",
            project_id=project_id,
            target_id=job_id,
            confirmation=outcome_of(confirmation),
            send=InfraBoxClient.rerun_job,
        )
        new_id = done.answer.new_job_id
        follow = f"get_job(project_id, '{new_id}')" if new_id else "get_build on the same build"
        return RerunJobResult(
            project_id=project_id,
            job_id=job_id,
            new_job_id=new_id,
            infrabox_message=done.answer.message,
            request_id=done.request_id,
            trigger_budget=BudgetOut.of(done.budget),
            replayed=done.replayed_after_s is not None,
            next_step=replay_note(done.replayed_after_s)
            + (
                f"InfraBox queued a clone of the job{f' ({new_id})' if new_id else ''}; downstream jobs were not "
                f"cloned. Follow it with {follow}; do not rerun the original again."
            ),
        )

    @server.tool(
        name="abort_job",
        title="Abort InfraBox job",
        description=(
            "Abort one queued or running job (asynchronous: InfraBox's scheduler kills it; a finished job is "
            "unchanged)."
        ),
        annotations=ToolAnnotations(
            title="Abort InfraBox job",
            read_only_hint=False,
            destructive_hint=True,
            idempotent_hint=False,
            open_world_hint=True,
        ),
    )
    async def abort_job(
        project_id: ProjectId,
        job_id: JobId,
        confirmation: job_resolver(deps, "abort_job", "abort"),  # type: ignore[valid-type]
    ) -> AbortJobResult:
        done = await run_trigger(
            deps,
            tool="abort_job",
            action="abort",
            kind="job",
            project_id=project_id,
            target_id=job_id,
            confirmation=outcome_of(confirmation),
            send=InfraBoxClient.abort_job,
        )
        return AbortJobResult(
            project_id=project_id,
            job_id=job_id,
            accepted=True,
            asynchronous=True,
            infrabox_message=done.answer.message,
            request_id=done.request_id,
            trigger_budget=BudgetOut.of(done.budget),
            replayed=done.replayed_after_s is not None,
            next_step=replay_note(done.replayed_after_s)
            + (
                "Abort requested. InfraBox kills the job asynchronously (state 'killed'); if it had already "
                "finished, nothing changes. Confirm with get_job in a few seconds; do not abort again."
            ),
        )
