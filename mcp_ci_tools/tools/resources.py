"""Resources: a job's console and a build's summary by URI, and completions for their (and the prompts') ids.

Every read passes the read pipeline like a tool (ids validated as UUIDs, the project allow-list, the read
budgets, an audit record named `resource:console` / `resource:build`), and the text is masked and marked
untrusted like `get_job_log`'s. A console read is bounded: the last `CONSOLE_BYTES` bytes, with a header
saying which bytes of the log they are and how to read the rest (`get_job_log` with `byte_offset`).

Completions (`completion/complete`) offer `project_id` (the ids of the projects the token may see whose id
or name starts with what was typed) and `build_id` (recent builds of the `project_id` already chosen). They
take read budget like `list_projects` and `list_builds`, and answer an empty list on any failure.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from mcp.server import MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ToolError
from mcp.types import (
    Completion,
    CompletionArgument,
    CompletionContext,
    PromptReference,
    ResourceTemplateReference,
)
from pydantic import BaseModel, Field

from mcp_ci_tools.domain import logtext
from mcp_ci_tools.tools._deps import Deps
from mcp_ci_tools.tools._findings import (
    BUILD_TEMPLATE,
    CONSOLE_TEMPLATE,
    MAX_LOG_BYTES,
    JobLogResult,
    console_uri,
    job_log_result,
)
from mcp_ci_tools.tools._read import ReadCall, build_with_jobs, log_with_job, run_read
from mcp_ci_tools.tools._views import MAX_OUTPUT_BYTES, BuildView, JobView, fit, job_views, state_counts

__all__ = ["CONSOLE_BYTES", "MAX_COMPLETIONS", "BuildSummary", "SummaryJob", "console_text", "register"]

log = logging.getLogger(__name__)

CONSOLE_BYTES = MAX_LOG_BYTES
MAX_COMPLETIONS = 100  # the most values one completion answer may carry (MCP)
_ALL_LINES = 1 << 40  # the console resource's tail is bounded by bytes only


class SummaryJob(BaseModel):
    job: JobView
    console: str = Field(description="resources/read URI of the job's console")


class BuildSummary(BaseModel):
    untrusted: str
    project_id: str
    build: BuildView
    state_counts: dict[str, int]
    jobs: list[SummaryJob]
    jobs_total: int
    note: str | None


def console_text(result: JobLogResult) -> str:
    """The console resource's text: a header (untrusted notice, byte range, how to read on), then the log."""
    lines = [
        f"# {result.untrusted}",
        f"# Console of job {result.job_id} (project {result.project_id}), state {result.job_state}: "
        f"bytes [{result.byte_start}, {result.byte_end}) of {result.total_bytes}, "
        f"{result.masked_secrets} secret(s) masked.",
    ]
    if result.prev_offset is not None:
        lines.append(
            f"# Earlier bytes are not shown: call get_job_log with byte_offset={result.prev_offset} to read the "
            f"page before, or byte_offset=0 for the start (then follow next_offset)."
        )
    if result.note:
        lines.append(f"# Note: {result.note}")
    return "\n".join(lines) + "\n" + result.text


def register(server: MCPServer, deps: Deps) -> None:
    @server.resource(
        CONSOLE_TEMPLATE,
        name="job_console",
        title="InfraBox job console",
        description=(
            f"A job's console log: its last {CONSOLE_BYTES} bytes, masked, after a header with the byte range; "
            "untrusted CI output. Read the rest with get_job_log and byte_offset."
        ),
        mime_type="text/plain",
    )
    async def job_console(project_id: str, job_id: str) -> str:
        async def fetch(call: ReadCall) -> JobLogResult:
            got, job = await log_with_job(call)
            return await job_log_result(
                got,
                job_state=job.state,
                project_id=project_id,
                job_id=job_id,
                tail_lines=_ALL_LINES,
                max_bytes=CONSOLE_BYTES,
            )

        with _as_resource_error():
            result = await run_read(
                deps,
                tool="resource:console",
                kind="job",
                ids={"project_id": project_id, "job_id": job_id},
                needs={"get_job_log": 1, "list_jobs": 1},
                fetch=fetch,
                detail=lambda r: {"total_bytes": r.total_bytes, "returned_bytes": r.returned_bytes},
            )
        return console_text(result)

    @server.resource(
        BUILD_TEMPLATE,
        name="build_summary",
        title="InfraBox build summary",
        description="A build, its state counts and its jobs (each with its console URI), as JSON; untrusted CI text.",
        mime_type="application/json",
    )
    async def build_summary(project_id: str, build_id: str) -> str:
        async def fetch(call: ReadCall) -> BuildSummary:
            build, page, ordered = await build_with_jobs(deps, call)
            views = job_views(ordered, deps.clock(), build_jobs=page.items)
            jobs = [SummaryJob(job=view, console=console_uri(project_id, view.id)) for view in views]
            shown = fit(jobs, MAX_OUTPUT_BYTES - 5_000)
            total = max(page.total or 0, len(page.items))
            return BuildSummary(
                untrusted=logtext.UNTRUSTED_NOTICE,
                project_id=project_id,
                build=BuildView.of(build),
                state_counts=state_counts(page.items),
                jobs=shown,
                jobs_total=total,
                note=None
                if len(shown) == len(jobs)
                else f"{len(jobs) - len(shown)} job(s) not shown (100 kB cap): list_jobs pages them",
            )

        with _as_resource_error():
            result = await run_read(
                deps,
                tool="resource:build",
                kind="build",
                ids={"project_id": project_id, "build_id": build_id},
                needs={"list_builds": 1, "list_jobs": 1},
                fetch=fetch,
                detail=lambda r: {"jobs_total": r.jobs_total},
            )
        return result.model_dump_json(indent=2)

    async def complete(
        ref: PromptReference | ResourceTemplateReference,
        argument: CompletionArgument,
        context: CompletionContext | None,
    ) -> Completion | None:
        known = dict(context.arguments or {}) if context is not None else {}
        try:
            if argument.name == "project_id":
                values = await _projects(deps, argument.value)
            elif argument.name == "build_id":
                values = await _builds(deps, known.get("project_id", ""), argument.value)
            elif argument.name == "branch":
                values = await _branches(deps, known.get("project_id", ""), argument.value)
            else:
                return None
        except (ToolError, ValueError) as error:  # a refusal or a bad id: nothing to offer
            log.info("completion of %s offered nothing: %s", argument.name, type(error).__name__)
            values = []
        return Completion(
            values=values[:MAX_COMPLETIONS], total=len(values), has_more=len(values) > MAX_COMPLETIONS
        )

    # The SDK's decorator is untyped; the handler above is typed.
    register_completion = server.completion()  # type: ignore[no-untyped-call]
    register_completion(complete)


def _starts(prefix: str, *texts: Any) -> bool:
    lowered = prefix.lower()
    return any(str(text).lower().startswith(lowered) for text in texts if text is not None)


async def _projects(deps: Deps, prefix: str) -> list[str]:
    async def fetch(call: ReadCall) -> list[str]:
        page = await call.client.list_projects(request_id=call.request_id)
        return [p.id for p in page.items if deps.scope.allows(p.id) and _starts(prefix, p.id, p.name)]

    return await run_read(
        deps,
        tool="completion:project_id",
        kind="project",
        ids={},
        needs={"list_projects": 1},
        fetch=fetch,
        detail=lambda values: {"offered": len(values)},
    )


async def _recent_builds(deps: Deps, project_id: str, tool: str) -> list[Any]:
    uuid.UUID(project_id)  # ValueError before anything: no project chosen yet

    async def fetch(call: ReadCall) -> list[Any]:
        page = await call.client.list_builds(call.project, request_id=call.request_id, limit=50)
        return list(page.items)

    return await run_read(
        deps,
        tool=tool,
        kind="project",
        ids={"project_id": project_id},
        needs={"list_builds": 1},
        fetch=fetch,
        detail=lambda builds: {"builds": len(builds)},
    )


async def _builds(deps: Deps, project_id: str, prefix: str) -> list[str]:
    builds = await _recent_builds(deps, project_id, "completion:build_id")
    return [b.id for b in builds if _starts(prefix, b.id, b.build_number)]


async def _branches(deps: Deps, project_id: str, prefix: str) -> list[str]:
    builds = await _recent_builds(deps, project_id, "completion:branch")
    return list(dict.fromkeys(b.branch for b in builds if b.branch and _starts(prefix, b.branch)))


@contextmanager
def _as_resource_error() -> Iterator[None]:
    """A read's refusal or failure (a ToolError) as the ResourceError a resource read reports, same text."""
    try:
        yield
    except ToolError as error:
        raise ResourceError(str(error)) from None
