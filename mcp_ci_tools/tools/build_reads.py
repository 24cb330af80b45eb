"""Build reads: list_builds and get_build."""

from __future__ import annotations

from typing import Annotated

from mcp.server import MCPServer
from pydantic import BaseModel, Field

from mcp_ci_tools.tools._deps import Deps
from mcp_ci_tools.tools._models import BuildId, ProjectId
from mcp_ci_tools.tools._read import ReadCall, build_with_jobs, learn_lineage, read_annotations, run_read
from mcp_ci_tools.tools._views import MAX_OUTPUT_BYTES, BuildView, JobView, fit, job_views, state_counts

__all__ = ["MAX_BUILDS", "GetBuildResult", "ListBuildsResult", "register"]

MAX_BUILDS = 50


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
    state_counts: dict[str, int] = Field(description="jobs per state, over ALL jobs of the build")
    jobs_total: int
    jobs: list[JobView] = Field(
        description="problem jobs first (failure, error, unstable, killed, active), then the rest"
    )
    jobs_shown: int
    truncated: bool
    next_step: str


def register(server: MCPServer, deps: Deps) -> None:
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
            "Get one build with its jobs (id, name, state, duration, message), a count of jobs per state, and "
            "for each job whether restart_job, rerun_job and abort_job are possible now (yes/no/unknown, with "
            "reasons). For a failed build, diagnose_build gives this plus failed tests and log tails in one call."
        ),
        annotations=read_annotations("Get InfraBox build"),
    )
    async def get_build(project_id: ProjectId, build_id: BuildId) -> GetBuildResult:
        async def fetch(call: ReadCall) -> GetBuildResult:
            build, jobs, ordered = await build_with_jobs(deps, call)
            views = fit(job_views(ordered, deps.clock(), build_jobs=jobs.items), MAX_OUTPUT_BYTES - 6_000)
            total = max(jobs.total or 0, len(jobs.items))
            return GetBuildResult(
                project_id=project_id,
                build=BuildView.of(build),
                state_counts=state_counts(jobs.items),
                jobs_total=total,
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
