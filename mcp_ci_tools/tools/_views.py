"""Output pieces the tools share: budget, build and job views, state counts, and the byte budget they fit in."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from dataclasses import asdict
from typing import TypeVar

from pydantic import BaseModel, Field

from mcp_ci_tools.client import Build, Job
from mcp_ci_tools.domain.actions import JobActions, downstream_of, possible_actions
from mcp_ci_tools.domain.masking import mask
from mcp_ci_tools.domain.states import ATTENTION_ORDER
from mcp_ci_tools.domain.terminal import terminal_safe
from mcp_ci_tools.domain.timestamps import parse_timestamp
from mcp_ci_tools.policy import BudgetState

__all__ = [
    "MAX_OUTPUT_BYTES",
    "BudgetOut",
    "BuildView",
    "JobView",
    "clip",
    "duration_s",
    "fit",
    "job_views",
    "problem_first",
    "rendered_size",
    "state_counts",
]

# Every tool result stays below this when serialised; pieces are cut to fit and the cut is reported.
MAX_OUTPUT_BYTES = 100_000
_MESSAGE_CHARS = 300
_CLIP_MARGIN = 2_048
_LAST_WORD = re.compile(r"\S*\Z")

ModelT = TypeVar("ModelT", bound=BaseModel)


class BudgetOut(BaseModel):
    """A budget: requests left in the sliding window and when the next slot frees."""

    limit: int = Field(description="requests allowed in any sliding window")
    remaining: int = Field(description="requests left in the current window")
    window_seconds: int
    seconds_until_next_slot: int = Field(description="0 when a request can be sent now")

    @classmethod
    def of(cls, state: BudgetState) -> BudgetOut:
        return cls(**asdict(state))


def clip(text: str | None, limit: int = _MESSAGE_CHARS) -> str | None:
    """CI- or InfraBox-written text as the model may see it: terminal-safe, secrets masked, cut to `limit` characters.

    A long text is made safe only up to `limit` + `_CLIP_MARGIN` characters, and the last word of that piece is
    dropped before it is shown: a secret has no whitespace in it, so one the piece's end cut too short to be
    recognised lies in that word, never in what is shown.
    """
    if not text:
        return text
    if len(text) <= limit + _CLIP_MARGIN:
        masked = mask(terminal_safe(text))
        return masked if len(masked) <= limit else masked[: limit - 1] + "…"
    masked = _LAST_WORD.sub("", mask(terminal_safe(text[: limit + _CLIP_MARGIN])))
    return masked[: limit - 1] + "…"


def rendered_size(item: BaseModel, depth: int) -> int:
    # Results reach the model as pretty-printed JSON (indent 2): count that, nested `depth` levels deep.
    pretty = json.dumps(item.model_dump(mode="json"), indent=2, ensure_ascii=False)
    return len(pretty.encode()) + (pretty.count("\n") + 1) * 2 * depth + 2


def fit(items: Sequence[ModelT], budget_bytes: int, *, depth: int = 2) -> list[ModelT]:
    """The longest prefix of `items` that fits in `budget_bytes` as the model will see it."""
    # A cheap upper bound first: most lists fit whole, and then nothing needs measuring item by item.
    compact = sum(len(item.__pydantic_serializer__.to_json(item)) for item in items)
    if compact * 4 + 2 <= budget_bytes:
        return list(items)
    kept: list[ModelT] = []
    used = 2
    for item in items:
        size = rendered_size(item, depth)
        if used + size > budget_bytes:
            break
        kept.append(item)
        used += size
    return kept


def duration_s(start: str | None, end: str | None, now: float) -> float | None:
    started = parse_timestamp(start)
    if started is None:
        return None
    ended = parse_timestamp(end)
    seconds = (ended.timestamp() if ended else now) - started.timestamp()
    return round(seconds, 1) if seconds >= 0 else None


class BuildView(BaseModel):
    id: str
    build_number: int | None
    restart_counter: int | None
    branch: str | None
    commit_id: str | None
    status: str | None = Field(description="derived by InfraBox from the jobs; null when it has none")
    created_at: str | None
    finished_at: str | None

    @classmethod
    def of(cls, build: Build) -> BuildView:
        return cls(
            id=build.id,
            build_number=build.build_number,
            restart_counter=build.restart_counter,
            branch=clip(build.branch, 200),
            commit_id=clip(build.commit_id, 80),
            status=clip(build.status, 40),
            created_at=clip(build.created_at, 40),
            finished_at=clip(build.finished_at, 40),
        )


class JobView(BaseModel):
    id: str
    name: str | None
    state: str | None
    duration_s: float | None = Field(description="seconds run so far, or in total once finished")
    message: str | None = Field(description="InfraBox's message for the job, cut to 300 characters")
    actions: JobActions = Field(description="what restart_job, rerun_job and abort_job would do now")


def _actions(job: Job, by_id: dict[str, Job], all_jobs: Sequence[Job] | None, superseded: bool) -> JobActions:
    dependents_states: list[str] | None = None
    parent_states: list[str] | None = None
    if (
        job.dependencies is not None
        and all_jobs is not None
        and all(j.dependencies is not None for j in all_jobs)
    ):
        graph = [{"id": j.id, "dependencies": j.dependencies} for j in all_jobs]
        dependents_states = [by_id[i].state or "unknown" for i in downstream_of(job.id, graph) if i in by_id]
        parents = [d.get("job-id") for d in job.dependencies]
        if all(str(p) in by_id for p in parents):
            parent_states = [by_id[str(p)].state or "unknown" for p in parents]
    elif job.dependencies == []:
        parent_states = []
    return possible_actions(
        job.state or "unknown",
        job_type=job.type,
        restarted=True if superseded else job.restarted,
        dependents_states=dependents_states,
        parent_states=parent_states,
    )


def job_views(
    jobs: Sequence[Job],
    now: float,
    *,
    build_jobs: Sequence[Job] | None = None,
    superseded: Collection[str] = (),
) -> list[JobView]:
    """Views of `jobs`; `build_jobs` (all jobs of their build) lets dependency rules be decided; `superseded`
    are ids of attempts that have a newer clone (restarted, whatever upstream says)."""
    context = build_jobs if build_jobs is not None else None
    by_id = {j.id: j for j in (context or jobs)}
    return [
        JobView(
            id=job.id,
            name=clip(job.name, 200),
            state=clip(job.state, 40),
            duration_s=duration_s(job.start_date, job.end_date, now),
            message=clip(job.message),
            actions=_actions(job, by_id, context, job.id in superseded),
        )
        for job in jobs
    ]


_RANK = {state: rank for rank, state in enumerate(ATTENTION_ORDER)}


def problem_first(jobs: Sequence[Job]) -> list[Job]:
    return sorted(jobs, key=lambda j: (_RANK.get(j.state or "", len(_RANK)), j.name or ""))


def state_counts(jobs: Iterable[Job]) -> dict[str, int]:
    return dict(sorted(Counter(clip(job.state, 40) or "unknown" for job in jobs).items()))
