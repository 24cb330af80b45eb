"""Build tools: list_builds and get_build (reads), restart_build and abort_build (triggers)."""

# No `from __future__ import annotations`: the trigger tools' confirmation annotation holds a resolver
# built at registration, which the SDK must see as an object, not as a string to evaluate later.

from typing import Annotated

from pydantic import BaseModel, Field

from mcp_ci_tools.client import BuildAborted, BuildRestarted, InfraBoxClient
from mcp_ci_tools.tools._args import BuildId, ProjectId
from mcp_ci_tools.tools._attempts import (
    ALL_COUNTS,
    CURRENT_COUNTS,
    HISTORY,
    JobHistory,
    current_counts,
    group_attempts,
    histories,
    superseded_ids,
)
from mcp_ci_tools.tools._confirm import Confirmation, Seen, ask_first, outcome_of
from mcp_ci_tools.tools._deps import Deps
from mcp_ci_tools.tools._dry_run import DRY_RUN_HELP, TriggerResult, dry_run_fields
from mcp_ci_tools.tools._host import ToolHost
from mcp_ci_tools.tools._pipeline import preview_trigger, run_trigger
from mcp_ci_tools.tools._read import ReadCall, build_with_jobs, learn_lineage, read_annotations, run_read
from mcp_ci_tools.tools._triggers import Trigger, trigger_annotations
from mcp_ci_tools.tools._views import (
    MAX_OUTPUT_BYTES,
    BudgetOut,
    BuildView,
    JobView,
    fit,
    job_views,
    rendered_size,
    state_counts,
)

__all__ = [
    "ABORT_BUILD",
    "MAX_BUILDS",
    "RESTART_BUILD",
    "AbortBuildResult",
    "GetBuildResult",
    "ListBuildsResult",
    "RestartBuildResult",
    "register_reads",
    "register_triggers",
]

MAX_BUILDS = 50

RESTART_BUILD = Trigger(
    tool="restart_build",
    action="restart",
    kind="build",
    send=InfraBoxClient.restart_build,
    answer=BuildRestarted,
    loop_guarded=True,
    method="POST",
    path="projects/{project_id}/builds/{build_id}/restart",
)
ABORT_BUILD = Trigger(
    tool="abort_build",
    action="abort",
    kind="build",
    send=InfraBoxClient.abort_build,
    answer=BuildAborted,
    loop_guarded=False,
    method="DELETE",
    path="projects/{project_id}/builds/{build_id}/abort",
)


class ListBuildsResult(BaseModel):
    project_id: str
    builds: list[BuildView] = Field(description="newest first")
    returned: int
    limit: int = Field(description="the limit applied (1..50)")
    filters: dict[str, str] = Field(description="branch/status filters applied")
    truncated: bool = Field(description="more builds matched than were returned")
    note: str | None = Field(description="set when the limit was clamped or something was cut")


class GetBuildResult(BaseModel):
    project_id: str
    build: BuildView
    state_counts: dict[str, int] = Field(description=CURRENT_COUNTS)
    all_attempts_state_counts: dict[str, int] = Field(description=ALL_COUNTS)
    jobs_total: int = Field(description="job rows, every attempt included")
    job_history: list[JobHistory] = Field(description=HISTORY)
    jobs: list[JobView] = Field(
        description="problem jobs first (failure, error, unstable, killed, active), then the rest"
    )
    jobs_shown: int
    truncated: bool
    next_step: str


class RestartBuildResult(TriggerResult):
    build_id: str = Field(description="the build that was restarted")
    new_build_id: str | None = Field(description="the new build InfraBox created, when it said")
    restart_counter: int | None = Field(description="the new build's restart counter (same build number)")


class AbortBuildResult(TriggerResult):
    build_id: str
    jobs_aborted: int | None = Field(description="abort requests InfraBox recorded, finished jobs included")
    asynchronous: bool = Field(description="always true: jobs are killed later by InfraBox's scheduler")


def register_reads(server: ToolHost, deps: Deps) -> None:
    @server.tool(
        name="list_builds",
        title="List InfraBox builds",
        description=(
            "List a project's builds, newest first (id, build number, restart counter, branch, commit, status). "
            "Filter by branch (exact name) and status (e.g. failure, running, finished). limit is 1..50 "
            "(default 20). For why a build failed, call diagnose_build next."
        ),
        annotations=read_annotations("List InfraBox builds"),
    )
    async def list_builds(
        project_id: ProjectId,
        branch: Annotated[str | None, Field(description="only builds of this branch", max_length=512)] = None,
        status: Annotated[str | None, Field(description="only builds in this status", max_length=64)] = None,
        limit: Annotated[int, Field(description="how many builds (1..50)")] = 20,
    ) -> ListBuildsResult:
        applied = min(max(limit, 1), MAX_BUILDS)
        filters = {key: value for key, value in (("branch", branch), ("status", status)) if value}

        async def fetch(call: ReadCall) -> ListBuildsResult:
            page = await call.client.list_builds(
                call.project, request_id=call.request_id, branch=branch, status=status, limit=applied
            )
            await learn_lineage(deps, call.project, builds=page.items)
            # Upstream #621 ignores the query parameters: filter here as well.
            matching = [
                b
                for b in page.items
                if (not branch or b.branch == branch) and (not status or b.status == status)
            ]
            views = fit([BuildView.of(b) for b in matching[:applied]], MAX_OUTPUT_BYTES - 2_000)
            notes = []
            if applied != limit:
                notes.append(f"limit {limit} was clamped to {applied} (allowed: 1..{MAX_BUILDS})")
            if len(views) < min(len(matching), applied):
                notes.append("the list was cut to stay under 100 kB")
            return ListBuildsResult(
                project_id=project_id,
                builds=views,
                returned=len(views),
                limit=applied,
                filters=filters,
                truncated=len(views) < len(matching) or (page.total or 0) > len(page.items),
                note="; ".join(notes) or None,
            )

        return await run_read(
            deps,
            tool="list_builds",
            kind="project",
            ids={"project_id": project_id},
            needs={"list_builds": 1},
            fetch=fetch,
            detail=lambda r: {"returned": r.returned},
        )

    @server.tool(
        name="get_build",
        title="Get InfraBox build with its jobs",
        description=(
            "One build with its jobs (id, name, state, duration, message), jobs per state, and per job whether "
            "restart_job, rerun_job and abort_job are possible now (yes/no/unknown, and why). For a red build, "
            "diagnose_build adds failed tests and log tails."
        ),
        annotations=read_annotations("Get InfraBox build"),
    )
    async def get_build(project_id: ProjectId, build_id: BuildId) -> GetBuildResult:
        async def fetch(call: ReadCall) -> GetBuildResult:
            build, jobs, ordered = await build_with_jobs(deps, call)
            groups = group_attempts(jobs.items)
            history = fit(histories(groups), 20_000)
            room = MAX_OUTPUT_BYTES - 6_000 - sum(rendered_size(h, 2) for h in history)
            views = fit(
                job_views(ordered, deps.clock(), build_jobs=jobs.items, superseded=superseded_ids(groups)),
                room,
            )
            total = max(jobs.total or 0, len(jobs.items))
            return GetBuildResult(
                project_id=project_id,
                build=BuildView.of(build),
                state_counts=current_counts(groups),
                all_attempts_state_counts=state_counts(jobs.items),
                jobs_total=total,
                job_history=history,
                jobs=views,
                jobs_shown=len(views),
                truncated=len(views) < total,
                next_step=(
                    "Act only where an action says 'yes' (or 'unknown', accepting that InfraBox may refuse). "
                    "For failed jobs, diagnose_build shows failed tests and log tails; get_job_log shows one log."
                ),
            )

        return await run_read(
            deps,
            tool="get_build",
            kind="build",
            ids={"project_id": project_id, "build_id": build_id},
            needs={"list_builds": 1, "list_jobs": 1},
            fetch=fetch,
            detail=lambda r: {"jobs_total": r.jobs_total},
        )


def register_triggers(server: ToolHost, deps: Deps) -> None:
    restart, abort = ask_first(deps, RESTART_BUILD), ask_first(deps, ABORT_BUILD)

    @server.tool(
        name=RESTART_BUILD.tool,
        title="Restart build",
        description=(
            "Restart a build: a new build (same number and commit, restart_counter + 1) runs every job again. "
            "Only failed jobs: restart_job or rerun_job."
        ),
        annotations=trigger_annotations("Restart build", destructive=False),
    )
    async def restart_build(
        project_id: ProjectId,
        build_id: BuildId,
        confirmation: Annotated[Confirmation, restart.confirmation],
        seen: Annotated[Seen, restart.seen],
        dry_run: Annotated[bool, Field(description=DRY_RUN_HELP)] = False,
    ) -> RestartBuildResult:
        if dry_run:
            found = await preview_trigger(deps, RESTART_BUILD, project_id, build_id)
            return RestartBuildResult(
                project_id=project_id,
                build_id=build_id,
                new_build_id=None,
                restart_counter=None,
                **dry_run_fields(found, RESTART_BUILD.tool),
            )
        done = await run_trigger(
            deps, RESTART_BUILD, project_id, build_id, confirmation=outcome_of(confirmation), shown=seen.state
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
            request_id=done.request_id,
            trigger_budget=BudgetOut.of(done.budget),
            replayed=done.replayed,
            next_step=done.next_step(next_step),
        )

    @server.tool(
        name=ABORT_BUILD.tool,
        title="Abort build",
        description=(
            "Abort a build: InfraBox later kills its queued and running jobs; finished jobs stay. Check with "
            "get_build."
        ),
        annotations=trigger_annotations("Abort build", destructive=True),
    )
    async def abort_build(
        project_id: ProjectId,
        build_id: BuildId,
        confirmation: Annotated[Confirmation, abort.confirmation],
        seen: Annotated[Seen, abort.seen],
        dry_run: Annotated[bool, Field(description=DRY_RUN_HELP)] = False,
    ) -> AbortBuildResult:
        if dry_run:
            found = await preview_trigger(deps, ABORT_BUILD, project_id, build_id)
            return AbortBuildResult(
                project_id=project_id,
                build_id=build_id,
                jobs_aborted=None,
                asynchronous=True,
                **dry_run_fields(found, ABORT_BUILD.tool),
            )
        done = await run_trigger(
            deps, ABORT_BUILD, project_id, build_id, confirmation=outcome_of(confirmation), shown=seen.state
        )
        return AbortBuildResult(
            project_id=project_id,
            build_id=build_id,
            jobs_aborted=done.answer.jobs_aborted,
            asynchronous=True,
            request_id=done.request_id,
            trigger_budget=BudgetOut.of(done.budget),
            replayed=done.replayed,
            next_step=done.next_step(
                "Abort requested. InfraBox kills the build's active jobs asynchronously (state 'killed', message "
                "'Aborted by <user>'); finished jobs are unchanged. Confirm with get_build in a few seconds; "
                "do not abort again."
            ),
        )
