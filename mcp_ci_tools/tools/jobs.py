"""Job tools: get_job (read), restart_job, rerun_job and abort_job (triggers)."""

# No `from __future__ import annotations`: the trigger tools' confirmation annotation holds a resolver
# built at registration, which the SDK must see as an object, not as a string to evaluate later.

from typing import Annotated

from pydantic import BaseModel, Field

from mcp_ci_tools.client import InfraBoxClient, JobAborted, JobRerun, JobRestarted
from mcp_ci_tools.tools._args import JobId, ProjectId
from mcp_ci_tools.tools._confirm import Confirmation, Seen, ask_first, outcome_of
from mcp_ci_tools.tools._deps import Deps
from mcp_ci_tools.tools._dry_run import DRY_RUN_HELP, TriggerResult, dry_run_fields
from mcp_ci_tools.tools._host import ToolHost
from mcp_ci_tools.tools._pipeline import preview_trigger, run_trigger
from mcp_ci_tools.tools._read import ReadCall, learn_lineage, read_annotations, run_read
from mcp_ci_tools.tools._triggers import Trigger, trigger_annotations
from mcp_ci_tools.tools._views import BudgetOut, JobView, clip, job_views

__all__ = [
    "ABORT_JOB",
    "RERUN_JOB",
    "RESTART_JOB",
    "AbortJobResult",
    "GetJobResult",
    "RerunJobResult",
    "RestartJobResult",
    "register_reads",
    "register_triggers",
]

RESTART_JOB = Trigger(
    tool="restart_job",
    action="restart",
    kind="job",
    send=InfraBoxClient.restart_job,
    answer=JobRestarted,
    loop_guarded=True,
    method="POST",
    path="projects/{project_id}/jobs/{job_id}/restart",
)
RERUN_JOB = Trigger(
    tool="rerun_job",
    action="rerun",
    kind="job",
    send=InfraBoxClient.rerun_job,
    answer=JobRerun,
    loop_guarded=True,
    method="POST",
    path="projects/{project_id}/jobs/{job_id}/rerun",
)
ABORT_JOB = Trigger(
    tool="abort_job",
    action="abort",
    kind="job",
    send=InfraBoxClient.abort_job,
    answer=JobAborted,
    loop_guarded=False,
    method="DELETE",
    path="projects/{project_id}/jobs/{job_id}/abort",
)


class GetJobResult(BaseModel):
    project_id: str
    job: JobView
    build_id: str | None
    start_date: str | None
    end_date: str | None
    next_step: str


class RestartJobResult(TriggerResult):
    job_id: str = Field(description="the job that was restarted")
    jobs_restarted: int | None = Field(
        description="jobs InfraBox cloned: this job plus its downstream dependents"
    )
    new_job_ids: list[str] = Field(
        description="ids of the clones, where InfraBox returned them (often it does not)"
    )


class RerunJobResult(TriggerResult):
    job_id: str = Field(description="the job that was rerun")
    new_job_id: str | None = Field(description="the clone InfraBox created, when it said")


class AbortJobResult(TriggerResult):
    job_id: str
    accepted: bool = Field(description="InfraBox recorded the abort request")
    asynchronous: bool = Field(description="always true: the job is killed later by InfraBox's scheduler")


def _restart_next_step(result_ids: list[str], count: int | None) -> str:
    how_many = f"{count} job(s)" if count is not None else "the job and its downstream jobs"
    ids = f" New job ids: {', '.join(result_ids)}." if result_ids else ""
    return (
        f"InfraBox queued clones of {how_many}, named with a .N suffix (e.g. 'test' → 'test.1'); the originals "
        f"are marked restarted.{ids} Follow them with get_build on the same build; do not restart the original "
        "again (InfraBox refuses a job that was already restarted)."
    )


def register_reads(server: ToolHost, deps: Deps) -> None:
    @server.tool(
        name="get_job",
        title="Get InfraBox job",
        description=(
            "Get one job: state, duration, message and which actions (restart_job, rerun_job, abort_job) are "
            "possible now. For its console use get_job_log; for failed tests get_test_results."
        ),
        annotations=read_annotations("Get InfraBox job"),
    )
    async def get_job(project_id: ProjectId, job_id: JobId) -> GetJobResult:
        async def fetch(call: ReadCall) -> GetJobResult:
            job = await call.client.get_job(call.project, call.ids["job_id"], request_id=call.request_id)
            await learn_lineage(deps, call.project, jobs=[job])
            [view] = job_views([job], deps.clock())
            return GetJobResult(
                project_id=project_id,
                job=view,
                build_id=clip(job.build_id, 40),
                start_date=clip(job.start_date, 40),
                end_date=clip(job.end_date, 40),
                next_step="get_build shows the job among its build's jobs, which decides dependency rules.",
            )

        return await run_read(
            deps,
            tool="get_job",
            kind="job",
            ids={"project_id": project_id, "job_id": job_id},
            needs={"list_jobs": 1},
            fetch=fetch,
        )


def register_triggers(server: ToolHost, deps: Deps) -> None:
    restart, rerun, abort = (ask_first(deps, trigger) for trigger in (RESTART_JOB, RERUN_JOB, ABORT_JOB))

    @server.tool(
        name=RESTART_JOB.tool,
        title="Restart job and downstream",
        description=(
            "Restart a failed or finished job AND the jobs downstream of it, cloned as name.1 (its dependents "
            "must be finished or queued). Only this job: rerun_job."
        ),
        annotations=trigger_annotations("Restart job and downstream", destructive=False),
    )
    async def restart_job(
        project_id: ProjectId,
        job_id: JobId,
        confirmation: Annotated[Confirmation, restart.confirmation],
        seen: Annotated[Seen, restart.seen],
        dry_run: Annotated[bool, Field(description=DRY_RUN_HELP)] = False,
    ) -> RestartJobResult:
        if dry_run:
            found = await preview_trigger(deps, RESTART_JOB, project_id, job_id)
            return RestartJobResult(
                project_id=project_id,
                job_id=job_id,
                jobs_restarted=None,
                new_job_ids=[],
                **dry_run_fields(found, RESTART_JOB.tool),
            )
        done = await run_trigger(
            deps, RESTART_JOB, project_id, job_id, confirmation=outcome_of(confirmation), shown=seen.state
        )
        answer = done.answer
        return RestartJobResult(
            project_id=project_id,
            job_id=job_id,
            jobs_restarted=answer.jobs_restarted,
            new_job_ids=answer.new_job_ids,
            request_id=done.request_id,
            trigger_budget=BudgetOut.of(done.budget),
            replayed=done.replayed,
            next_step=done.next_step(_restart_next_step(answer.new_job_ids, answer.jobs_restarted)),
        )

    @server.tool(
        name=RERUN_JOB.tool,
        title="Rerun one job",
        description=(
            "Rerun ONE failed or finished job, cloned as name.1; jobs skipped because of it stay skipped "
            "(restart_job runs those too)."
        ),
        annotations=trigger_annotations("Rerun one job", destructive=False),
    )
    async def rerun_job(
        project_id: ProjectId,
        job_id: JobId,
        confirmation: Annotated[Confirmation, rerun.confirmation],
        seen: Annotated[Seen, rerun.seen],
        dry_run: Annotated[bool, Field(description=DRY_RUN_HELP)] = False,
    ) -> RerunJobResult:
        if dry_run:
            found = await preview_trigger(deps, RERUN_JOB, project_id, job_id)
            return RerunJobResult(
                project_id=project_id, job_id=job_id, new_job_id=None, **dry_run_fields(found, RERUN_JOB.tool)
            )
        done = await run_trigger(
            deps, RERUN_JOB, project_id, job_id, confirmation=outcome_of(confirmation), shown=seen.state
        )
        new_id = done.answer.new_job_id
        follow = f"get_job(project_id, '{new_id}')" if new_id else "get_build on the same build"
        return RerunJobResult(
            project_id=project_id,
            job_id=job_id,
            new_job_id=new_id,
            request_id=done.request_id,
            trigger_budget=BudgetOut.of(done.budget),
            replayed=done.replayed,
            next_step=done.next_step(
                f"InfraBox queued a clone of the job{f' ({new_id})' if new_id else ''}; downstream jobs were not "
                f"cloned. Follow it with {follow}; do not rerun the original again."
            ),
        )

    @server.tool(
        name=ABORT_JOB.tool,
        title="Abort job",
        description=(
            "Abort one queued or running job (asynchronous: InfraBox's scheduler kills it; a finished job is "
            "unchanged)."
        ),
        annotations=trigger_annotations("Abort job", destructive=True),
    )
    async def abort_job(
        project_id: ProjectId,
        job_id: JobId,
        confirmation: Annotated[Confirmation, abort.confirmation],
        seen: Annotated[Seen, abort.seen],
        dry_run: Annotated[bool, Field(description=DRY_RUN_HELP)] = False,
    ) -> AbortJobResult:
        if dry_run:
            found = await preview_trigger(deps, ABORT_JOB, project_id, job_id)
            return AbortJobResult(
                project_id=project_id,
                job_id=job_id,
                accepted=False,
                asynchronous=True,
                **dry_run_fields(found, ABORT_JOB.tool),
            )
        done = await run_trigger(
            deps, ABORT_JOB, project_id, job_id, confirmation=outcome_of(confirmation), shown=seen.state
        )
        return AbortJobResult(
            project_id=project_id,
            job_id=job_id,
            accepted=True,
            asynchronous=True,
            request_id=done.request_id,
            trigger_budget=BudgetOut.of(done.budget),
            replayed=done.replayed,
            next_step=done.next_step(
                "Abort requested. InfraBox kills the job asynchronously (state 'killed'); if it had already "
                "finished, nothing changes. Confirm with get_job in a few seconds; do not abort again."
            ),
        )
