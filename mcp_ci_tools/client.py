"""The InfraBox `/api/v1/mcp` client: one method per endpoint, typed results, one error tree.

    InfraBoxError(message, *, status=None, reason=None, request_id=None)
      InfraBoxUnreachable   certainly not sent (connect error, connect/pool timeout), after the retries ran out
      OutcomeUnknown        a write was sent but no usable answer came back (read timeout, reset, 5xx)
      TokenRejected         401
      Forbidden             403; .kind is "project_not_enabled" or "no_trigger_permission"
      NotFound              404
      NotPossibleNow        400, 409, 422: the state does not allow it (.reason is InfraBox's text)
      RateLimited           429; .retry_after_s
      UpstreamBroken        any other answer, or a read that got no usable answer

httpx errors are translated in `_translate_transport_errors` and status codes in `_raise_for_status`;
nothing else here catches httpx exceptions. A write is retried only when it was certainly not sent.
"""

from __future__ import annotations

import email.utils
import functools
import logging
import math
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

if TYPE_CHECKING:  # httpx and tenacity load on the first request: a stdio start-up lists tools without them
    import httpx
    from tenacity import RetryCallState

import anyio
from pydantic import BaseModel, ConfigDict, ValidationError

from mcp_ci_tools import __version__
from mcp_ci_tools.domain.ids import canonical_uuid
from mcp_ci_tools.domain.masking import mask
from mcp_ci_tools.domain.timestamps import Clock, Sleep

__all__ = [
    "Build",
    "BuildAborted",
    "BuildRestarted",
    "Forbidden",
    "InfraBoxClient",
    "InfraBoxError",
    "InfraBoxUnreachable",
    "Job",
    "JobAborted",
    "JobLog",
    "JobRerun",
    "JobRestarted",
    "NotFound",
    "NotPossibleNow",
    "OutcomeUnknown",
    "Page",
    "Project",
    "RateLimited",
    "TestRun",
    "TokenRejected",
    "UpstreamBroken",
    "WriteAnswer",
]

log = logging.getLogger("mcp_ci_tools.client")


@functools.cache
def _certainly_not_sent() -> tuple[type[Exception], ...]:
    """Only these mean the request never left this machine, so only these may be retried for a write."""
    import httpx

    return (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


@functools.cache
def _read_retryable() -> tuple[type[Exception], ...]:
    """Reads are idempotent: any transport failure may be retried, a dropped connection included."""
    import httpx

    return (httpx.TransportError, _RetryableStatus)


_MAX_ATTEMPTS = 3
# httpcore scans its whole pool on every request: more connections than this cost more than they bring.
_POOL_SIZE = 16
_MAX_RETRY_SECONDS = 10.0
_DEFAULT_RETRY_AFTER_S = 60
_REASON_LIMIT = 300


class InfraBoxError(Exception):
    """A call to InfraBox that did not succeed."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        reason: str | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.request_id = request_id


class InfraBoxUnreachable(InfraBoxError):
    """Nothing reached InfraBox (connection refused, connect or pool timeout), even after retrying."""


class OutcomeUnknown(InfraBoxError):
    """A write was sent but no usable answer came back: it may or may not have taken effect."""


class TokenRejected(InfraBoxError):
    """401: the token is invalid, unknown, expired or revoked."""


class Forbidden(InfraBoxError):
    """403: the project is not enabled for this token, or the token has no trigger permission."""

    def __init__(self, message: str, *, kind: str, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.kind = kind


class NotFound(InfraBoxError):
    """404: the project, build or job does not exist, or not in that project."""


class NotPossibleNow(InfraBoxError):
    """400/409/422: InfraBox refuses the operation in the current state."""


class RateLimited(InfraBoxError):
    """429: InfraBox's own rate limit."""

    def __init__(self, message: str, *, retry_after_s: int, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after_s = retry_after_s


class UpstreamBroken(InfraBoxError):
    """An answer that fits no row of the contract, or a read with no usable answer."""

    def __init__(self, message: str, *, retry_after_s: int | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class WriteAnswer:
    """InfraBox accepted a write (any 2xx); subclasses hold the fields normalised across upstream shapes."""

    http_status: int

    def created(self) -> list[tuple[Literal["build", "job"], str]]:
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


def _message_of(response: httpx.Response) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return _clean_text(response.text)
    if isinstance(body, dict):
        return _clean_text(body.get("message"))
    return _clean_text(body) if isinstance(body, str) else None


def _retry_after_s(response: httpx.Response, now: float) -> int:
    header = response.headers.get("retry-after", "").strip()
    if header.isdigit():
        return max(1, int(header))
    if header:
        try:
            when = email.utils.parsedate_to_datetime(header).timestamp()
        except (TypeError, ValueError, IndexError):
            return _DEFAULT_RETRY_AFTER_S
        return max(1, math.ceil(when - now))
    return _DEFAULT_RETRY_AFTER_S


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class _Pool:
    """The one httpx client (connection pool) shared by every token's view of InfraBox."""

    def __init__(self, timeout: float, transport: httpx.AsyncBaseTransport | None) -> None:
        self._timeout = timeout
        self._transport = transport
        self._http: httpx.AsyncClient | None = None

    def get(self) -> httpx.AsyncClient:
        if self._http is None or self._http.is_closed:
            import httpx

            self._http = httpx.AsyncClient(
                transport=self._transport,
                timeout=self._timeout,
                follow_redirects=False,
                limits=httpx.Limits(max_connections=_POOL_SIZE, max_keepalive_connections=_POOL_SIZE),
                headers={"User-Agent": f"mcp-ci-tools/{__version__}", "Accept": "application/json"},
            )
        return self._http

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None


class InfraBoxClient:
    """Talks to `{base_url}/api/v1/mcp` as one token. Paths take `uuid.UUID`, never strings.

    `with_token` gives another token's view over the same connection pool (HTTP transports serve many
    callers, each with their own token; one caller's token is only ever sent on that caller's calls).
    """

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Sleep = anyio.sleep,
        clock: Clock = time.time,
        _pool: _Pool | None = None,
    ) -> None:
        self.api_url = base_url.rstrip("/") + "/api/v1/mcp"
        self._base_url = base_url
        self._token = token
        self._sleep = sleep
        self._clock = clock
        self._pool = _pool or _Pool(timeout, transport)

    def with_token(self, token: str) -> InfraBoxClient:
        return InfraBoxClient(self._base_url, token, sleep=self._sleep, clock=self._clock, _pool=self._pool)

    async def aclose(self) -> None:
        await self._pool.aclose()

    # Writes ---------------------------------------------------------------------------------------

    async def restart_build(
        self, project_id: uuid.UUID, build_id: uuid.UUID, *, request_id: str
    ) -> BuildRestarted:
        response, body = await self._write(
            "POST", f"projects/{project_id}/builds/{build_id}/restart", request_id=request_id
        )
        return BuildRestarted(
            http_status=response.status_code,
            new_build_id=canonical_uuid(body.get("build_id")),
            restart_counter=_int_or_none(body.get("restart_counter")),
            message=_clean_text(body.get("message")),
        )

    async def abort_build(
        self, project_id: uuid.UUID, build_id: uuid.UUID, *, request_id: str
    ) -> BuildAborted:
        response, body = await self._write(
            "DELETE", f"projects/{project_id}/builds/{build_id}/abort", request_id=request_id
        )
        count = body.get("jobs_aborted", body.get("aborted_count"))
        return BuildAborted(
            http_status=response.status_code,
            jobs_aborted=_int_or_none(count),
            message=_clean_text(body.get("message")),
        )

    async def restart_job(self, project_id: uuid.UUID, job_id: uuid.UUID, *, request_id: str) -> JobRestarted:
        response, body = await self._write(
            "POST", f"projects/{project_id}/jobs/{job_id}/restart", request_id=request_id
        )
        new_ids = [str(i) for i in (body.get("new_job_ids") or []) if canonical_uuid(i)]
        clone_id = canonical_uuid(body.get("job_id"))
        if clone_id is not None and clone_id != str(job_id) and clone_id not in new_ids:
            new_ids.insert(0, clone_id)
        return JobRestarted(
            http_status=response.status_code,
            jobs_restarted=_int_or_none(body.get("jobs_restarted", body.get("cloned_count"))),
            new_job_ids=new_ids,
            message=_clean_text(body.get("message") or body.get("status")),
        )

    async def rerun_job(self, project_id: uuid.UUID, job_id: uuid.UUID, *, request_id: str) -> JobRerun:
        response, body = await self._write(
            "POST", f"projects/{project_id}/jobs/{job_id}/rerun", request_id=request_id
        )
        new_id = canonical_uuid(body.get("new_job_id")) or canonical_uuid(body.get("job_id"))
        return JobRerun(
            http_status=response.status_code,
            new_job_id=None if new_id == str(job_id) else new_id,
            message=_clean_text(body.get("message") or body.get("status")),
        )

    async def abort_job(self, project_id: uuid.UUID, job_id: uuid.UUID, *, request_id: str) -> JobAborted:
        response, body = await self._write(
            "DELETE", f"projects/{project_id}/jobs/{job_id}/abort", request_id=request_id
        )
        return JobAborted(http_status=response.status_code, message=_clean_text(body.get("message")))

    # Reads ----------------------------------------------------------------------------------------

    async def list_projects(self, *, request_id: str) -> Page[Project]:
        return _page(await self._read("projects", request_id=request_id), Project, request_id)

    async def list_builds(
        self,
        project_id: uuid.UUID,
        *,
        request_id: str,
        branch: str | None = None,
        status: str | None = None,
        limit: int | None = None,
    ) -> Page[Build]:
        params = {"branch": branch, "status": status, "limit": limit}
        body = await self._read(
            f"projects/{project_id}/builds",
            request_id=request_id,
            params={key: value for key, value in params.items() if value is not None},
        )
        return _page(body, Build, request_id)

    async def get_build(self, project_id: uuid.UUID, build_id: uuid.UUID, *, request_id: str) -> Build:
        return _one(
            await self._read(f"projects/{project_id}/builds/{build_id}", request_id=request_id),
            Build,
            request_id,
        )

    async def list_jobs(self, project_id: uuid.UUID, build_id: uuid.UUID, *, request_id: str) -> Page[Job]:
        return _page(
            await self._read(f"projects/{project_id}/builds/{build_id}/jobs", request_id=request_id),
            Job,
            request_id,
        )

    async def get_job(self, project_id: uuid.UUID, job_id: uuid.UUID, *, request_id: str) -> Job:
        return _one(
            await self._read(f"projects/{project_id}/jobs/{job_id}", request_id=request_id), Job, request_id
        )

    async def get_job_log(self, project_id: uuid.UUID, job_id: uuid.UUID, *, request_id: str) -> JobLog:
        body = await self._read(f"projects/{project_id}/jobs/{job_id}/log", request_id=request_id)
        if isinstance(body, str):
            return JobLog(text=body)
        if body is None:
            return JobLog(text="")
        if isinstance(body, dict) and isinstance(body.get("log", ""), str):
            return _one({**body, "text": body.get("log") or ""}, JobLog, request_id)
        raise UpstreamBroken("InfraBox sent a log in an unknown shape", request_id=request_id)

    async def list_testruns(
        self, project_id: uuid.UUID, job_id: uuid.UUID, *, request_id: str
    ) -> Page[TestRun]:
        body = await self._read(f"projects/{project_id}/jobs/{job_id}/testruns", request_id=request_id)
        return _page(body, TestRun, request_id)

    # Plumbing -------------------------------------------------------------------------------------

    async def _read(self, path: str, *, request_id: str, params: dict[str, Any] | None = None) -> Any:
        response = await self._send("GET", path, request_id=request_id, write=False, params=params)
        try:
            return response.json()
        except ValueError:
            raise UpstreamBroken(
                f"InfraBox answered {response.status_code} with a body that is not JSON",
                request_id=request_id,
            ) from None

    async def _write(
        self, method: str, path: str, *, request_id: str
    ) -> tuple[httpx.Response, dict[str, Any]]:
        response = await self._send(method, path, request_id=request_id, write=True)
        try:
            body = response.json()
        except ValueError:
            body = None
        # Any 2xx is a success; read whichever fields are present.
        return response, body if isinstance(body, dict) else {}

    async def _send(
        self, method: str, path: str, *, request_id: str, write: bool, params: dict[str, Any] | None = None
    ) -> httpx.Response:
        if self._token is None:
            raise RuntimeError("InfraBoxClient has no token: use with_token() first")
        from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, stop_before_delay

        client = self._pool.get()
        request = client.build_request(
            method,
            f"{self.api_url}/{path}",  # absolute: httpx then parses the URL once instead of merging it
            params=params,
            headers={"Authorization": f"Bearer {self._token}", "X-Request-ID": request_id},
        )
        now = self._clock
        with _translate_transport_errors(request_id=request_id, write=write):
            async for attempt in AsyncRetrying(
                retry=retry_if_exception_type(_certainly_not_sent() if write else _read_retryable()),
                stop=stop_after_attempt(_MAX_ATTEMPTS) | stop_before_delay(_MAX_RETRY_SECONDS),
                wait=_wait_for_retry,
                sleep=self._sleep,
                before_sleep=_log_retry,
                reraise=True,
            ):
                with attempt:
                    response = await client.send(request)
                    if not write and response.status_code in _READ_RETRY_STATUSES:
                        _raise_retryable_status(response, request_id=request_id, now=now())
        _raise_for_status(response, request_id=request_id, write=write, now=now())
        return response


class _RetryableStatus(Exception):
    """A read answered 502/503/504: worth another attempt, after `wait_s` if InfraBox said so."""

    def __init__(self, response: httpx.Response, wait_s: float | None) -> None:
        super().__init__(f"InfraBox answered {response.status_code}")
        self.response = response
        self.wait_s = wait_s


_READ_RETRY_STATUSES = frozenset({502, 503, 504})
_MAX_HONOURED_RETRY_AFTER_S = 10


@functools.cache
def _backoff() -> Callable[[RetryCallState], float]:
    from tenacity import wait_exponential_jitter

    return wait_exponential_jitter(multiplier=0.5, max=4, jitter=0.5)


def _wait_for_retry(state: RetryCallState) -> float:
    error = state.outcome.exception() if state.outcome else None
    if isinstance(error, _RetryableStatus) and error.wait_s is not None:
        return error.wait_s
    return _backoff()(state)


def _raise_retryable_status(response: httpx.Response, *, request_id: str, now: float) -> None:
    if "retry-after" not in response.headers:
        raise _RetryableStatus(response, None)
    wait = _retry_after_s(response, now)
    if wait > _MAX_HONOURED_RETRY_AFTER_S:
        raise UpstreamBroken(
            f"InfraBox is unavailable ({response.status_code}) and asks to wait {wait} s",
            status=response.status_code,
            reason=_message_of(response),
            request_id=request_id,
            retry_after_s=wait,
        )
    raise _RetryableStatus(response, float(wait))


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


def _log_retry(state: RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome else None
    wait = state.next_action.sleep if state.next_action else 0.0
    log.warning(
        "InfraBox call failed (%s), attempt %d of %d; retrying in %.2f s",
        type(error).__name__,
        state.attempt_number,
        _MAX_ATTEMPTS,
        wait,
    )


@contextmanager
def _translate_transport_errors(*, request_id: str, write: bool) -> Iterator[None]:
    import httpx

    try:
        yield
    except _RetryableStatus as error:
        _raise_for_status(error.response, request_id=request_id, write=write, now=time.time())
        raise  # pragma: no cover - 5xx always raises above
    except _certainly_not_sent() as error:
        raise InfraBoxUnreachable(
            f"could not connect to InfraBox ({type(error).__name__})", request_id=request_id
        ) from error
    except httpx.TransportError as error:
        kind = type(error).__name__
        if write:
            raise OutcomeUnknown(f"sent, but no answer came back ({kind})", request_id=request_id) from error
        raise UpstreamBroken(f"no usable answer from InfraBox ({kind})", request_id=request_id) from error


def _raise_for_status(response: httpx.Response, *, request_id: str, write: bool, now: float) -> None:
    status = response.status_code
    if 200 <= status < 300:
        return
    reason = _message_of(response)
    common: dict[str, Any] = {"status": status, "reason": reason, "request_id": request_id}
    if status == 401:
        raise TokenRejected("InfraBox rejected the token", **common)
    if status == 403:
        kind = "no_trigger_permission" if reason and "trigger permission" in reason else "project_not_enabled"
        raise Forbidden("InfraBox refused access", kind=kind, **common)
    if status == 404:
        raise NotFound("not found", status=status, request_id=request_id)
    if status in (400, 409, 422):
        raise NotPossibleNow("InfraBox refused the operation in the current state", **common)
    if status == 429:
        raise RateLimited("InfraBox rate limit", retry_after_s=_retry_after_s(response, now), **common)
    if status >= 500 and write:
        raise OutcomeUnknown(f"InfraBox answered {status}", **common)
    raise UpstreamBroken(f"unexpected answer {status} from InfraBox", **common)
