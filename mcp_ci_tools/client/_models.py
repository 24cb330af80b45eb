"""What InfraBox answers, normalised: the wire models, the write answers, and the helpers that read them.

#621 and #628 send different shapes; everything here accepts both and trusts no field's type.
`_decode_json` is the one way a body becomes a value: UTF-8 only, numbers bounded (a 5000-digit integer,
`1e400` and `NaN` become null), nesting at most `_MAX_DEPTH` deep. The shapes are lenient: an optional
field of the wrong type becomes None instead of failing the object, and every string is cut to its
field's bound (`_STRING_LIMITS`) while it is decoded, so nothing InfraBox sends is kept at full size.
"""

from __future__ import annotations

import json
import math
import uuid
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, ModelWrapValidatorHandler, ValidationError, model_validator

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
_MAX_DEPTH = 32  # the deepest shape read (a page of jobs with their dependencies) is 5 levels
_MAX_INT_DIGITS = 30
_MAX_ITEMS = 20_000  # per list; InfraBox sends at most 50 builds, and a build of 10,000 jobs is read whole
_MAX_DEPENDENCIES = 200
_MAX_NEW_IDS = 500  # new job ids of one restart: each is audited, kept for dedupe and taught to the lineage
_ID_LIMIT = 100  # a UUID is 36 characters
_DATE_LIMIT = 64
_TEXT_LIMIT = 1_000
_MESSAGE_LIMIT = 4_000
_STACK_LIMIT = 16_000
# field name → the most characters kept of it; fields not named here keep `_TEXT_LIMIT`.
_STRING_LIMITS = {
    "id": _ID_LIMIT,
    "project_id": _ID_LIMIT,
    "build_id": _ID_LIMIT,
    "commit_id": _ID_LIMIT,
    "created_at": _DATE_LIMIT,
    "finished_at": _DATE_LIMIT,
    "start_date": _DATE_LIMIT,
    "end_date": _DATE_LIMIT,
    "timestamp": _DATE_LIMIT,
    "message": _MESSAGE_LIMIT,
    "stack": _STACK_LIMIT,
    "text": None,  # the log: bounded by the log endpoint's byte cap instead
}


@dataclass(frozen=True)
class WriteAnswer:
    """InfraBox accepted a write (any 2xx); subclasses hold the fields normalised across upstream shapes.

    `answer_unread` says why the 2xx answer's body was not read (too large, not complete in time): the
    status proves the write happened, but its fields (new ids, counts) are then unknown and left None.
    """

    http_status: int
    answer_unread: str | None = field(default=None, kw_only=True)

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
    """Upstream objects: unknown fields ignored, absent ones None (#621 and #628 differ in what they send).

    Every field is first bounded (strings cut, lists of dependencies cleaned); an optional field that still
    does not validate becomes None. Only a required field (an id, the log text) can fail the object.
    One check per object, not per field: a build of 10,000 jobs is validated in tens of milliseconds.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    @model_validator(mode="wrap")
    @classmethod
    def _lenient(cls, data: Any, handler: ModelWrapValidatorHandler[Any]) -> Any:
        if not isinstance(data, dict):
            return handler(data)  # not an object: fails as a whole
        data = _bounded_fields(data)
        try:
            return handler(data)
        except ValidationError as error:
            wrong = {str(problem["loc"][0]) for problem in error.errors() if problem["loc"]}
            if any(cls.model_fields[name].is_required() for name in wrong if name in cls.model_fields):
                raise
            return handler({key: value for key, value in data.items() if key not in wrong})


def _bounded_fields(data: dict[str, Any]) -> dict[str, Any]:
    """`data` with every string cut to its field's bound and the dependencies cleaned (a copy only if needed)."""
    changed: dict[str, Any] = {}
    for key, value in data.items():
        if key == "dependencies":
            changed[key] = _dependencies(value)
        elif isinstance(value, str):
            limit = _STRING_LIMITS.get(key, _TEXT_LIMIT)
            if (limit is not None and len(value) > limit) or not value.isascii():
                changed[key] = _bounded(value, limit)
    return {**data, **changed} if changed else data


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


def _bounded(text: str, limit: int | None) -> str:
    """`text` cut to `limit` characters (None: not cut), with lone surrogates (`"\\ud800"`) replaced."""
    if limit is not None and len(text) > limit:
        text = text[: limit - 1] + "…"
    if not text.isascii():
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text


def _dependencies(value: object) -> list[dict[str, Any]] | None:
    """`[{"job", "job-id", "on"}]` with only those keys, bounded; anything else in the list is dropped."""
    if not isinstance(value, list):
        return None
    cleaned: list[dict[str, Any]] = []
    for entry in value[:_MAX_DEPENDENCIES]:
        if not isinstance(entry, dict):
            continue
        on = entry.get("on")
        cleaned.append(
            {
                "job": _bounded(entry["job"], _TEXT_LIMIT) if isinstance(entry.get("job"), str) else None,
                "job-id": _bounded(entry["job-id"], _ID_LIMIT)
                if isinstance(entry.get("job-id"), str)
                else None,
                "on": [_bounded(s, _ID_LIMIT) for s in on[:20] if isinstance(s, str)]
                if isinstance(on, list)
                else [],
            }
        )
    return cleaned


class _NotJson(Exception):
    """The body is not a JSON value this client reads; the message says why."""


def _int(text: str) -> int | None:
    digits = len(text) - text.startswith("-")
    return int(text) if digits <= _MAX_INT_DIGITS else None


def _float(text: str) -> float | None:
    number = float(text)
    return number if math.isfinite(number) else None


def _decode_json(body: bytes) -> Any:
    """The JSON value in `body`, or `_NotJson`. Never raises anything else."""
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise _NotJson("a body that is not UTF-8") from None
    if not text.strip():
        raise _NotJson("an empty body")
    try:
        value = json.loads(text, parse_int=_int, parse_float=_float, parse_constant=lambda _: None)
    except RecursionError:
        raise _NotJson(f"JSON nested deeper than {_MAX_DEPTH} levels") from None
    except ValueError:
        raise _NotJson("a body that is not JSON") from None
    if _too_deep(value):
        raise _NotJson(f"JSON nested deeper than {_MAX_DEPTH} levels")
    return value


def _too_deep(value: Any) -> bool:
    """Whether `value` nests lists and objects more than `_MAX_DEPTH` deep (walked without recursion)."""
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        node, depth = pending.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else None
        if children is None:
            continue
        if depth > _MAX_DEPTH:
            return True
        pending.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


def _clean_text(value: object) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return None
    # Cut before masking and splitting: a 12 MB message must not be scanned whole.
    text = " ".join(mask(_bounded(value, _MESSAGE_LIMIT)).split())
    return text if len(text) <= _REASON_LIMIT else text[: _REASON_LIMIT - 1] + "…"


def _int_or_none(value: object) -> int | None:
    """A count as InfraBox sent it, or None when it is not one (a bool, negative, or absurdly large)."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 10**12:
        return value
    return None


def _page(body: Any, shape: type[ItemT], request_id: str) -> Page[ItemT]:
    total = None
    if isinstance(body, dict) and isinstance(body.get("items"), list):
        total = _int_or_none(body.get("total"))
        body = body["items"]
    if not isinstance(body, list):
        raise UpstreamBroken("InfraBox sent a list in an unknown shape", request_id=request_id)
    if len(body) > _MAX_ITEMS:  # keep the first ones; `total` still says how many there were
        total = max(total or 0, len(body))
        body = body[:_MAX_ITEMS]
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
    if isinstance(body, dict) and isinstance(body.get("log") or "", str):
        return _one({**body, "text": body.get("log") or ""}, JobLog, request_id)
    raise UpstreamBroken("InfraBox sent a log in an unknown shape", request_id=request_id)


# Write answers: `body` is the 2xx answer's JSON object, or {} when it sent none or `unread` says why
# it was not read; no field is ever guessed.


def _build_restarted(status: int, body: dict[str, Any], unread: str | None) -> BuildRestarted:
    return BuildRestarted(
        http_status=status,
        answer_unread=unread,
        new_build_id=canonical_uuid(body.get("build_id")),
        restart_counter=_int_or_none(body.get("restart_counter")),
        message=_clean_text(body.get("message")),
    )


def _build_aborted(status: int, body: dict[str, Any], unread: str | None) -> BuildAborted:
    count = body.get("jobs_aborted", body.get("aborted_count"))
    return BuildAborted(
        http_status=status,
        answer_unread=unread,
        jobs_aborted=_int_or_none(count),
        message=_clean_text(body.get("message")),
    )


def _job_restarted(status: int, body: dict[str, Any], unread: str | None, job_id: uuid.UUID) -> JobRestarted:
    listed = body.get("new_job_ids")
    new_ids = [
        u for i in (listed if isinstance(listed, list) else [])[:_MAX_NEW_IDS] if (u := canonical_uuid(i))
    ]
    clone_id = canonical_uuid(body.get("job_id"))
    if clone_id is not None and clone_id != str(job_id) and clone_id not in new_ids:
        new_ids.insert(0, clone_id)
    return JobRestarted(
        http_status=status,
        answer_unread=unread,
        jobs_restarted=_int_or_none(body.get("jobs_restarted", body.get("cloned_count"))),
        new_job_ids=new_ids,
        message=_clean_text(body.get("message") or body.get("status")),
    )


def _job_rerun(status: int, body: dict[str, Any], unread: str | None, job_id: uuid.UUID) -> JobRerun:
    new_id = canonical_uuid(body.get("new_job_id")) or canonical_uuid(body.get("job_id"))
    return JobRerun(
        http_status=status,
        answer_unread=unread,
        new_job_id=None if new_id == str(job_id) else new_id,
        message=_clean_text(body.get("message") or body.get("status")),
    )


def _job_aborted(status: int, body: dict[str, Any], unread: str | None) -> JobAborted:
    return JobAborted(http_status=status, message=_clean_text(body.get("message")), answer_unread=unread)
