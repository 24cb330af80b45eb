"""The target of a trigger as it is now: what a dry run shows and what a user's confirmation is bound to.

A look is an ordinary read (`get_build` with its jobs, or `get_job`): it passes the read pipeline, takes
read budget and is audited as that read. `TargetState.binding` is what must not change between the moment
the user saw it and the moment the call is sent: a build's status and restart counter, a job's state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mcp_ci_tools.client import Build, Job
from mcp_ci_tools.tools._deps import Deps
from mcp_ci_tools.tools._read import ReadCall, build_with_jobs, run_read
from mcp_ci_tools.tools._triggers import Trigger
from mcp_ci_tools.tools._views import clip

__all__ = ["TargetState", "look_at_target"]


@dataclass(frozen=True)
class TargetState:
    """A target as read now: `summary` for people and agents, `binding` to compare with a later look."""

    summary: str
    binding: tuple[Any, ...]


async def look_at_target(deps: Deps, trigger: Trigger[Any], project_id: str, target_id: str) -> TargetState:
    """Read the target of `trigger` now, or raise `ToolError` (a bad id, no read budget, InfraBox failed)."""
    if trigger.kind == "build":
        return await run_read(
            deps,
            tool="get_build",
            kind="build",
            ids={"project_id": project_id, "build_id": target_id},
            needs={"list_builds": 1, "list_jobs": 1},
            fetch=lambda call: _build_state(deps, call, trigger),
            detail=lambda state: {"for": f"{trigger.tool} preview"},
        )
    return await run_read(
        deps,
        tool="get_job",
        kind="job",
        ids={"project_id": project_id, "job_id": target_id},
        needs={"list_jobs": 1},
        fetch=lambda call: _job_state(call, trigger),
        detail=lambda state: {"for": f"{trigger.tool} preview"},
    )


async def _build_state(deps: Deps, call: ReadCall, trigger: Trigger[Any]) -> TargetState:
    build, page, _ = await build_with_jobs(deps, call)
    jobs = f"{len(page.items)} job{'' if len(page.items) == 1 else 's'}"
    return TargetState(
        summary=f"{_build_name(build)}, {jobs}{_restart_effect(build, trigger)}",
        binding=(build.status, build.restart_counter),
    )


def _build_name(build: Build) -> str:
    branch = f" of branch {clip(build.branch, 80)}" if build.branch else ""
    status = build.status or "unknown (InfraBox gave none)"
    counter = "" if build.restart_counter is None else f", restart counter {build.restart_counter}"
    return f"build {_number(build)}{branch}, status {clip(status, 40)}{counter}"


def _restart_effect(build: Build, trigger: Trigger[Any]) -> str:
    if trigger.tool != "restart_build" or build.restart_counter is None:
        return ""
    return f"; a restart makes build {_number(build)} restart counter {build.restart_counter + 1}"


def _number(build: Build) -> str:
    return f"#{build.build_number}" if build.build_number is not None else build.id


async def _job_state(call: ReadCall, trigger: Trigger[Any]) -> TargetState:
    job = await call.client.get_job(call.project, call.ids["job_id"], request_id=call.request_id)
    return TargetState(summary=_job_summary(job, trigger), binding=(job.state,))


def _job_summary(job: Job, trigger: Trigger[Any]) -> str:
    name = clip(job.name, 80) if job.name else job.id
    state = clip(job.state, 40) if job.state else "unknown (InfraBox gave none)"
    effect = {
        "rerun_job": f"; a rerun clones only it (as {name}.1)",
        "restart_job": "; a restart clones it and the jobs downstream of it",
        "abort_job": "",
    }.get(trigger.tool, "")
    return f"job {name}, state {state}{effect}"
