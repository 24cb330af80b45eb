"""The read pipeline: ids → read budgets (every slot the call needs, before anything is sent) → InfraBox → audit.

Reads are audited like triggers (decision and outcome) but in one `result` record, not synced to disk,
and an audit failure never blocks a read: the record goes to the stderr log instead.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio
from mcp.types import ToolAnnotations

from mcp_ci_tools.audit import AuditRecord, Decision, Outcome
from mcp_ci_tools.client import Build, InfraBoxClient, InfraBoxError, Job, JobLog, Page, TokenRejected
from mcp_ci_tools.domain.logtext import OffsetOutOfRange, PatternTooSlow
from mcp_ci_tools.policy import PolicyDenied, parse_id
from mcp_ci_tools.tools._deps import Deps
from mcp_ci_tools.tools._errors import Target, audit_reason, to_tool_error
from mcp_ci_tools.tools._views import problem_first

__all__ = [
    "ReadCall",
    "build_with_jobs",
    "gather",
    "learn_lineage",
    "log_with_job",
    "read_annotations",
    "run_read",
]

ResultT = TypeVar("ResultT")


def read_annotations(title: str) -> ToolAnnotations:
    return ToolAnnotations(
        title=title, read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=True
    )


async def learn_lineage(
    deps: Deps, project: uuid.UUID, *, builds: Iterable[Build] = (), jobs: Iterable[Job] = ()
) -> None:
    """Remember which build number each build and job belongs to, for the restart-loop guard."""
    for build in builds:
        await deps.lineage.learn_build(str(project), build.id, build.build_number)
    await deps.lineage.learn_jobs(str(project), ((job.id, job.build_id) for job in jobs))


async def build_with_jobs(deps: Deps, call: ReadCall) -> tuple[Build, Page[Job], list[Job]]:
    """A build and all its jobs, fetched together; the jobs again with problem jobs first. Teaches the lineage."""
    build_id = call.ids["build_id"]
    build, page = await gather(
        lambda: call.client.get_build(call.project, build_id, request_id=call.request_id),
        lambda: call.client.list_jobs(call.project, build_id, request_id=call.request_id),
    )
    ordered = problem_first(page.items)
    await learn_lineage(deps, call.project, builds=[build], jobs=ordered)
    return build, page, ordered


async def log_with_job(call: ReadCall) -> tuple[JobLog, Job]:
    """A job's console log and the job itself (its state says whether the log is live or archived)."""
    job_id = call.ids["job_id"]
    log, job = await gather(
        lambda: call.client.get_job_log(call.project, job_id, request_id=call.request_id),
        lambda: call.client.get_job(call.project, job_id, request_id=call.request_id),
    )
    return log, job


async def gather(*calls: Callable[[], Awaitable[Any]]) -> list[Any]:
    """Run calls concurrently; the first `InfraBoxError` is raised as itself, not inside an ExceptionGroup."""
    results: list[Any] = [None] * len(calls)

    async def run(index: int, call: Callable[[], Awaitable[Any]]) -> None:
        results[index] = await call()

    try:
        async with anyio.create_task_group() as group:
            for index, call in enumerate(calls):
                group.start_soon(run, index, call)
    except BaseExceptionGroup as failures:
        first = next((e for e in failures.exceptions if isinstance(e, InfraBoxError)), None)
        if first is None:
            raise
        raise first from None
    return results


@dataclass(frozen=True)
class ReadCall:
    """What a read's fetch step gets: parsed ids, the request id to send, the caller's own client, and the
    caller's key for any budget it takes (`fingerprint` is for people to read)."""

    ids: dict[str, uuid.UUID]
    request_id: str
    client: InfraBoxClient
    fingerprint: str
    key: str

    @property
    def project(self) -> uuid.UUID:
        return self.ids["project_id"]


async def run_read(
    deps: Deps,
    *,
    tool: str,
    kind: str,
    ids: Mapping[str, str],
    needs: Mapping[str, int],
    fetch: Callable[[ReadCall], Awaitable[ResultT]],
    validate: Callable[[], None] | None = None,
    detail: Callable[[ResultT], dict[str, Any]] | None = None,
) -> ResultT:
    """Run one read tool call, or raise `ToolError`. `validate` checks other arguments before any budget."""
    caller = deps.caller()
    request_id = deps.new_request_id()
    started = deps.clock()
    project_id = ids.get("project_id", "")
    target_key = next((key for key in ids if key != "project_id"), None)
    target = Target(
        action="read",
        kind=kind,
        project_id=project_id,
        target_id=ids[target_key] if target_key else None,
        write=False,
        infrabox_url=deps.infrabox_url,
        token_fingerprint=caller.fingerprint,
        caller_brings_token=caller.brings_own_token,
    )

    async def audit(
        decision: Decision,
        outcome: Outcome,
        *,
        reason: str | None = None,
        http_status: int | None = None,
        summary: dict[str, Any] | None = None,
    ) -> None:
        record = AuditRecord(
            event="result",
            tool=tool,
            token=caller.fingerprint,
            token_sha256=caller.key,
            request_id=request_id,
            decision=decision,
            outcome=outcome,
            reason=reason,
            project_id=ids.get("project_id"),
            build_id=ids.get("build_id"),
            job_id=ids.get("job_id"),
            http_status=http_status,
            duration_ms=round((deps.clock() - started) * 1000, 3),
            detail=summary or {},
        )
        await deps.audit.write_or_log(record, durable=False)

    try:
        parsed = {key: parse_id(key, value) for key, value in ids.items()}
        if "project_id" in parsed:
            deps.scope.check(parsed["project_id"])
        if validate is not None:
            validate()
        await deps.read_budgets.reserve(caller.key, needs)
    except PolicyDenied as denied:
        await audit("denied", "denied", reason=denied.reason)
        raise to_tool_error(denied, target) from None
    try:
        result = await fetch(
            ReadCall(
                ids=parsed,
                request_id=request_id,
                client=caller.client,
                fingerprint=caller.fingerprint,
                key=caller.key,
            )
        )
    except InfraBoxError as error:
        if isinstance(error, TokenRejected):
            await deps.rejected.remember(caller.key)
        await audit("allowed", "error", reason=audit_reason(error), http_status=error.status)
        raise to_tool_error(error, target) from None
    except (PatternTooSlow, OffsetOutOfRange) as refused:  # refused once the fetched log was seen
        await audit("allowed", "denied", reason=audit_reason(refused))
        raise to_tool_error(refused, target) from None
    await audit("allowed", "success", http_status=200, summary=detail(result) if detail else None)
    return result
