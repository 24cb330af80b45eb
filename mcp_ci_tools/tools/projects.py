"""list_projects: the projects this token may use."""

from __future__ import annotations

from pydantic import BaseModel, Field

from mcp_ci_tools.tools._deps import Deps
from mcp_ci_tools.tools._host import ToolHost
from mcp_ci_tools.tools._read import ReadCall, read_annotations, run_read
from mcp_ci_tools.tools._views import MAX_OUTPUT_BYTES, clip, fit

__all__ = ["ListProjectsResult", "ProjectView", "register"]


class ProjectView(BaseModel):
    id: str
    name: str | None
    type: str | None = Field(description="e.g. upload, github, gerrit")
    public: bool | None


class ListProjectsResult(BaseModel):
    projects: list[ProjectView]
    returned: int
    total: int = Field(description="projects InfraBox returned (or reported, when it pages)")
    truncated: bool
    next_step: str


def register(server: ToolHost, deps: Deps) -> None:
    @server.tool(
        name="list_projects",
        title="List InfraBox projects",
        description=(
            "List the InfraBox projects this server's token may use (id, name, type, public). Start here to "
            "find a project_id; then use list_builds or diagnose_build."
        ),
        annotations=read_annotations("List InfraBox projects"),
    )
    async def list_projects() -> ListProjectsResult:
        async def fetch(call: ReadCall) -> ListProjectsResult:
            page = await call.client.list_projects(request_id=call.request_id)
            views = [
                ProjectView(id=p.id, name=clip(p.name, 200), type=clip(p.type, 40), public=p.public)
                for p in page.items
                if deps.scope.allows(p.id)
            ]
            shown = fit(views, MAX_OUTPUT_BYTES - 2_000)
            total = len(views) if deps.scope.allowed else max(page.total or 0, len(page.items))
            return ListProjectsResult(
                projects=shown,
                returned=len(shown),
                total=total,
                truncated=len(shown) < total,
                next_step="Use a project's id with list_builds(project_id) or diagnose_build(project_id, build_id).",
            )

        return await run_read(
            deps,
            tool="list_projects",
            kind="project",
            ids={},
            needs={"list_projects": 1},
            fetch=fetch,
            detail=lambda r: {"returned": r.returned},
        )
