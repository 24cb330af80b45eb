"""`InfraBoxClient`: one method per `/api/v1/mcp` endpoint, typed results, errors from the one tree."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import anyio

from mcp_ci_tools.client._errors import UpstreamBroken
from mcp_ci_tools.client._models import (
    Build,
    BuildAborted,
    BuildRestarted,
    Job,
    JobAborted,
    JobLog,
    JobRerun,
    JobRestarted,
    Page,
    Project,
    TestRun,
    _build_aborted,
    _build_restarted,
    _decode_json,
    _job_aborted,
    _job_log,
    _job_rerun,
    _job_restarted,
    _NotJson,
    _one,
    _page,
)
from mcp_ci_tools.client._observe import API_PATH, NO_OBSERVER, RequestObserver, RequestTarget
from mcp_ci_tools.client._transport import (
    LIST_BYTES,
    LOG_BYTES,
    ONE_OBJECT_BYTES,
    _Answer,
    _Pool,
)
from mcp_ci_tools.domain.timestamps import Clock, Sleep

if TYPE_CHECKING:
    import httpx

__all__ = ["InfraBoxClient"]


class InfraBoxClient:
    """Talks to `{base_url}/api/v1/mcp` as one token. Paths take `uuid.UUID`, never strings.

    `with_token` gives another token's view over the same connection pool (HTTP transports serve many
    callers, each with their own token; one caller's token is only ever sent on that caller's calls).
    The pool opens on the first request; after `aclose()` every view refuses to send until `open()`.
    Each method names its endpoint by a path template; `observer` sees every attempt by that template.
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
        observer: RequestObserver = NO_OBSERVER,
        _pool: _Pool | None = None,
    ) -> None:
        self.api_url = base_url.rstrip("/") + API_PATH
        self._base_url = base_url
        self._token = token
        self._sleep = sleep
        self._clock = clock
        self._observer = observer
        self._pool = _pool or _Pool(timeout, transport)
        parts = urlsplit(base_url)
        self._server = (parts.hostname or "", parts.port)

    def with_token(self, token: str) -> InfraBoxClient:
        return InfraBoxClient(
            self._base_url,
            token,
            sleep=self._sleep,
            clock=self._clock,
            observer=self._observer,
            _pool=self._pool,
        )

    async def open(self) -> None:
        """Makes a closed client usable again (for every view); does nothing to an open one."""
        self._pool.open()

    async def aclose(self) -> None:
        """Closes the shared pool: requests on any view raise RuntimeError until `open()`."""
        await self._pool.aclose()

    # Writes ---------------------------------------------------------------------------------------

    async def restart_build(
        self, project_id: uuid.UUID, build_id: uuid.UUID, *, request_id: str
    ) -> BuildRestarted:
        path = _Path(
            "projects/{project_id}/builds/{build_id}/restart", project_id=project_id, build_id=build_id
        )
        return _build_restarted(*await self._write("POST", path, request_id=request_id))

    async def abort_build(
        self, project_id: uuid.UUID, build_id: uuid.UUID, *, request_id: str
    ) -> BuildAborted:
        path = _Path(
            "projects/{project_id}/builds/{build_id}/abort", project_id=project_id, build_id=build_id
        )
        return _build_aborted(*await self._write("DELETE", path, request_id=request_id))

    async def restart_job(self, project_id: uuid.UUID, job_id: uuid.UUID, *, request_id: str) -> JobRestarted:
        path = _Path("projects/{project_id}/jobs/{job_id}/restart", project_id=project_id, job_id=job_id)
        return _job_restarted(*await self._write("POST", path, request_id=request_id), job_id)

    async def rerun_job(self, project_id: uuid.UUID, job_id: uuid.UUID, *, request_id: str) -> JobRerun:
        path = _Path("projects/{project_id}/jobs/{job_id}/rerun", project_id=project_id, job_id=job_id)
        return _job_rerun(*await self._write("POST", path, request_id=request_id), job_id)

    async def abort_job(self, project_id: uuid.UUID, job_id: uuid.UUID, *, request_id: str) -> JobAborted:
        path = _Path("projects/{project_id}/jobs/{job_id}/abort", project_id=project_id, job_id=job_id)
        return _job_aborted(*await self._write("DELETE", path, request_id=request_id))

    # Reads ----------------------------------------------------------------------------------------

    async def list_projects(self, *, request_id: str) -> Page[Project]:
        body = await self._read(
            _Path("projects"), request_id=request_id, cap=LIST_BYTES, what="the project list"
        )
        return _page(body, Project, request_id)

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
            _Path("projects/{project_id}/builds", project_id=project_id),
            request_id=request_id,
            params={key: value for key, value in params.items() if value is not None},
            cap=LIST_BYTES,
            what="the build list",
        )
        return _page(body, Build, request_id)

    async def get_build(self, project_id: uuid.UUID, build_id: uuid.UUID, *, request_id: str) -> Build:
        body = await self._read(
            _Path("projects/{project_id}/builds/{build_id}", project_id=project_id, build_id=build_id),
            request_id=request_id,
            cap=ONE_OBJECT_BYTES,
            what="the build",
        )
        return _one(body, Build, request_id)

    async def list_jobs(self, project_id: uuid.UUID, build_id: uuid.UUID, *, request_id: str) -> Page[Job]:
        body = await self._read(
            _Path("projects/{project_id}/builds/{build_id}/jobs", project_id=project_id, build_id=build_id),
            request_id=request_id,
            cap=LIST_BYTES,
            what="the job list",
        )
        return _page(body, Job, request_id)

    async def get_job(self, project_id: uuid.UUID, job_id: uuid.UUID, *, request_id: str) -> Job:
        body = await self._read(
            _Path("projects/{project_id}/jobs/{job_id}", project_id=project_id, job_id=job_id),
            request_id=request_id,
            cap=ONE_OBJECT_BYTES,
            what="the job",
        )
        return _one(body, Job, request_id)

    async def get_job_log(self, project_id: uuid.UUID, job_id: uuid.UUID, *, request_id: str) -> JobLog:
        body = await self._read(
            _Path("projects/{project_id}/jobs/{job_id}/log", project_id=project_id, job_id=job_id),
            request_id=request_id,
            cap=LOG_BYTES,
            what="the job log",
        )
        return _job_log(body, request_id)

    async def list_testruns(
        self, project_id: uuid.UUID, job_id: uuid.UUID, *, request_id: str
    ) -> Page[TestRun]:
        body = await self._read(
            _Path("projects/{project_id}/jobs/{job_id}/testruns", project_id=project_id, job_id=job_id),
            request_id=request_id,
            cap=LIST_BYTES,
            what="the test results",
        )
        return _page(body, TestRun, request_id)

    # Plumbing -------------------------------------------------------------------------------------

    async def _read(
        self, path: _Path, *, request_id: str, cap: int, what: str, params: dict[str, Any] | None = None
    ) -> Any:
        answer = await self._send(
            "GET", path, request_id=request_id, write=False, params=params, cap=cap, what=what
        )
        try:
            return _decode_json(answer.body)
        except _NotJson as problem:
            raise UpstreamBroken(
                f"InfraBox answered {answer.status_code} with {problem} for {what}",
                status=answer.status_code,
                request_id=request_id,
            ) from None

    async def _write(
        self, method: str, path: _Path, *, request_id: str
    ) -> tuple[int, dict[str, Any], str | None]:
        """The 2xx status, the answer's JSON object ({} when it sent none or it could not be read), and why
        the body was not read, if it was not."""
        answer = await self._send(
            method, path, request_id=request_id, write=True, cap=ONE_OBJECT_BYTES, what="the write's answer"
        )
        try:
            body = None if answer.unread else _decode_json(answer.body)
        except _NotJson:
            body = None
        # Any 2xx is a success; read whichever fields are present.
        return answer.status_code, body if isinstance(body, dict) else {}, answer.unread

    async def _send(
        self,
        method: str,
        path: _Path,
        *,
        request_id: str,
        write: bool,
        cap: int,
        what: str,
        params: dict[str, Any] | None = None,
    ) -> _Answer:
        if self._token is None:
            raise RuntimeError("InfraBoxClient has no token: use with_token() first")
        return await self._pool.send(
            method,
            f"{self.api_url}/{path.filled()}",  # absolute: httpx then parses the URL once instead of merging it
            target=RequestTarget(
                method=method,
                template=f"{API_PATH}/{path.template}",
                ids=path.ids,
                server_address=self._server[0],
                server_port=self._server[1],
            ),
            observer=self._observer,
            token=self._token,
            request_id=request_id,
            write=write,
            params=params,
            sleep=self._sleep,
            clock=self._clock,
            cap=cap,
            what=what,
        )


@dataclass(frozen=True, init=False)
class _Path:
    """An endpoint path below `/api/v1/mcp`: its template, and the UUIDs that fill it."""

    template: str
    ids: dict[str, str]

    def __init__(self, template: str, **ids: uuid.UUID) -> None:
        object.__setattr__(self, "template", template)
        object.__setattr__(self, "ids", {name: str(value) for name, value in ids.items()})

    def filled(self) -> str:
        return self.template.format_map(self.ids)
