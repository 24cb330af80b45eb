"""What InfraBox answers, normalised: the wire models, the write answers, and the helpers that read them.

#621 and #628 send different shapes; everything here accepts both and trusts no field's type.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from mcp_ci_tools.client._errors import UpstreamBroken
from mcp_ci_tools.domain.ids import canonical_uuid
from mcp_ci_tools.domain.masking import mask

__all__ = [
    "Build",
    "BuildAborted",
    "BuildRestarted",
    "Job",
    "JobAborted",
    "JobLog",
    "JobRerun",
    "JobRestarted",
    "Page",
    "Project",
    "TestRun",
    "WriteAnswer",
]

_REASON_LIMIT = 300


@dataclass(frozen=True)
class WriteAnswer:
    """InfraBox accepted a write (any 2xx); subclasses hold the fields normalised across upstream shapes."""

    http_status: int

    def created(self) -> list[tuple[Literal["build", "job"], str]]:
        """The builds and jobs InfraBox created for this write, in the order it named them."""
        return []


@dataclass(frozen=True)
class BuildRestarted(WriteAnswer):
    new_build_id: str | None
    restart_counter: int | None
    message: str | None

    def created(self) -> list[tuple[Literal["build", "job"], str]]:
        return [("build", self.new_build_id)] if self.new_build_id else []


@dataclass(frozen=True)
class BuildAborted(WriteAnswer):
    jobs_aborted: int | None
    message: str | None


@dataclass(frozen=True)
class JobRestarted(WriteAnswer):
    jobs_restarted: int | None
    new_job_ids: list[str] = field(default_factory=list)
    message: str | None = None

    def created(self) -> list[tuple[Literal["build", "job"], str]]:
        return [("job", job_id) for job_id in self.new_job_ids]


@dataclass(frozen=True)
class JobRerun(WriteAnswer):
    new_job_id: str | None
    message: str | None

    def created(self) -> list[tuple[Literal["build", "job"], str]]:
        return [("job", self.new_job_id)] if self.new_job_id else []


@dataclass(frozen=True)
class JobAborted(WriteAnswer):
    message: str | None


class _Shape(BaseModel):
    """Upstream objects: unknown fields ignored, absent ones None (#621 and #628 differ in what they send)."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class Project(_Shape):
    id: str
    name: str | None = None
    type: str | None = None
    public: bool | None = None


class Build(_Shape):
    id: str
    build_number: int | None = None
    restart_counter: int | None = None
    project_id: str | None = None
    commit_id: str | None = None
    branch: str | None = None
    created_at: str | None = None
    finished_at: str | None = None
    status: str | None = None


class Job(_Shape):
    id: str
    name: str | None = None
    state: str | None = None
    build_id: str | None = None
    project_id: str | None = None
    start_date: str | None = None
    end_date: str | None = None
    message: str | None = None
    # Not in #621's job objects; read where an upstream version sends them.
    type: str | None = None
    restarted: bool | None = None
    dependencies: list[dict[str, Any]] | None = None


class TestRun(_Shape):
    __test__ = False  # not a pytest class

    state: str | None = None
    name: str | None = None
    suite: str | None = None
    duration: float | None = None
    message: str | None = None
    stack: str | None = None
    timestamp: str | None = None


class JobLog(_Shape):
    """The console log as upstream returned it; `total_bytes`/`truncated` only where #628's object gives them."""

    text: str
    total_bytes: int | None = None
    offset: int | None = None
    truncated: bool | None = None


ItemT = TypeVar("ItemT", bound=_Shape)


@dataclass(frozen=True)
class Page(Generic[ItemT]):
    """A list from either shape: a bare array, or #628's `{"items","total","limit","offset"}`."""

    items: list[ItemT]
    total: int | None = None


def _clean_text(value: object) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return None
    text = " ".join(mask(value).split())
    return text if len(text) <= _REASON_LIMIT else text[: _REASON_LIMIT - 1] + "…"


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _page(body: Any, shape: type[ItemT], request_id: str) -> Page[ItemT]:
    total = None
    if isinstance(body, dict) and isinstance(body.get("items"), list):
        total = _int_or_none(body.get("total"))
        body = body["items"]
    if not isinstance(body, list):
        raise UpstreamBroken("InfraBox sent a list in an unknown shape", request_id=request_id)
    return Page(items=[_one(item, shape, request_id) for item in body], total=total)


def _one(body: Any, shape: type[ItemT], request_id: str) -> ItemT:
    try:
        return shape.model_validate(body)
    except ValidationError as error:
        raise UpstreamBroken(
            f"InfraBox sent a {shape.__name__.lower()} in an unknown shape ({error.error_count()} problem(s))",
            request_id=request_id,
        ) from None


def _job_log(body: Any, request_id: str) -> JobLog:
    if isinstance(body, str):
        return JobLog(text=body)
    if body is None:
        return JobLog(text="")
    if isinstance(body, dict) and isinstance(body.get("log", ""), str):
        return _one({**body, "text": body.get("log") or ""}, JobLog, request_id)
    raise UpstreamBroken("InfraBox sent a log in an unknown shape", request_id=request_id)


# Write answers: `body` is the 2xx answer's JSON object, or {} when it sent none.


def _build_restarted(status: int, body: dict[str, Any]) -> BuildRestarted:
    return BuildRestarted(
        http_status=status,
        new_build_id=canonical_uuid(body.get("build_id")),
        restart_counter=_int_or_none(body.get("restart_counter")),
        message=_clean_text(body.get("message")),
    )


def _build_aborted(status: int, body: dict[str, Any]) -> BuildAborted:
    count = body.get("jobs_aborted", body.get("aborted_count"))
    return BuildAborted(
        http_status=status, jobs_aborted=_int_or_none(count), message=_clean_text(body.get("message"))
    )


def _job_restarted(status: int, body: dict[str, Any], job_id: uuid.UUID) -> JobRestarted:
    new_ids = [str(i) for i in (body.get("new_job_ids") or []) if canonical_uuid(i)]
    clone_id = canonical_uuid(body.get("job_id"))
    if clone_id is not None and clone_id != str(job_id) and clone_id not in new_ids:
        new_ids.insert(0, clone_id)
    return JobRestarted(
        http_status=status,
        jobs_restarted=_int_or_none(body.get("jobs_restarted", body.get("cloned_count"))),
        new_job_ids=new_ids,
        message=_clean_text(body.get("message") or body.get("status")),
    )


def _job_rerun(status: int, body: dict[str, Any], job_id: uuid.UUID) -> JobRerun:
    new_id = canonical_uuid(body.get("new_job_id")) or canonical_uuid(body.get("job_id"))
    return JobRerun(
        http_status=status,
        new_job_id=None if new_id == str(job_id) else new_id,
        message=_clean_text(body.get("message") or body.get("status")),
    )


def _job_aborted(status: int, body: dict[str, Any]) -> JobAborted:
    return JobAborted(http_status=status, message=_clean_text(body.get("message")))
