"""The `/api/v1/mcp` routes and the one pipeline every request goes through.

Order of checks, as upstream: token (401) → rate limit (429) → project scope (403) → trigger permission
(403, writes) → existence (404) → job state (400). A malformed id is a 404, never a 500. Each authenticated
request leaves an `attempt` row in `mcp_access_log`, then one `success`, `forbidden` or `failure` row.
"""

from __future__ import annotations

import sqlite3
import threading
import uuid
from collections.abc import Callable, Mapping
from contextlib import closing
from dataclasses import dataclass
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mcp_ci_tools.sandbox import auth, db, ops

__all__ = ["API_PREFIX", "ROUTES", "SandboxState", "exception_handlers"]

API_PREFIX = "/api/v1/mcp"

# Flask's own texts, which upstream answers with.
_NOT_FOUND = (
    "The requested URL was not found on the server. If you entered the URL manually please check your "
    "spelling and try again."
)
_NOT_ALLOWED = "The method is not allowed for the requested URL."
_OUTCOMES = {401: "forbidden", 403: "forbidden", 429: "forbidden"}


@dataclass(frozen=True)
class SandboxState:
    """What every request needs, set up by `create_app` and found on `app.state.sandbox`."""

    db_path: str
    clock: Callable[[], float]
    lock: threading.Lock
    limiter: auth.RateLimiter
    archived_logs: bool = False


@dataclass(frozen=True)
class _Endpoint:
    name: str
    bucket: str
    op: Callable[[ops.Call], Any]
    write: bool


@dataclass(frozen=True)
class _Incoming:
    method: str
    path: str
    authorization: list[str]
    path_params: Mapping[str, str]
    query: Mapping[str, str]


def _canonical(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise HTTPException(404) from None


def _audit(
    conn: sqlite3.Connection,
    state: SandboxState,
    token: auth.Token,
    endpoint: _Endpoint,
    incoming: _Incoming,
    now: float,
    status: str,
    http_status: int | None = None,
    message: str | None = None,
) -> None:
    with db.transaction(conn, state.lock):
        conn.execute(
            "INSERT INTO mcp_access_log (token_id, user_id, endpoint, method, path, project_id, status,"
            " http_status, message, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                token.token_id,
                token.user_id,
                endpoint.name,
                incoming.method,
                incoming.path,
                incoming.path_params.get("project_id", "")[:64] or None,
                status,
                http_status,
                message,
                now,
            ),
        )


def _authorised_call(
    conn: sqlite3.Connection,
    state: SandboxState,
    token: auth.Token,
    endpoint: _Endpoint,
    incoming: _Incoming,
    now: float,
) -> ops.Call:
    retry_after = state.limiter.hit(token.user_id, endpoint.bucket, now)
    if retry_after is not None:
        raise HTTPException(429, auth.RATE_LIMITED, headers={"Retry-After": str(retry_after)})
    params = incoming.path_params
    project_id = ""
    if "project_id" in params:
        project_id = _canonical(params["project_id"])  # not a uuid: no such project, whoever asks
        auth.check_project(conn, token, project_id, now)
    if endpoint.write and not token.allow_trigger:
        raise HTTPException(403, auth.FORBIDDEN_TRIGGER)
    return ops.Call(
        conn=conn,
        lock=state.lock,
        now=now,
        token=token,
        project_id=project_id,
        build_id=_canonical(params["build_id"]) if "build_id" in params else "",
        job_id=_canonical(params["job_id"]) if "job_id" in params else "",
        query=incoming.query,
        archived_logs=state.archived_logs,
    )


def _serve(state: SandboxState, endpoint: _Endpoint, incoming: _Incoming) -> Any:
    now = state.clock()
    with closing(db.connect(state.db_path)) as conn:
        token = auth.authenticate(conn, incoming.authorization, now)
        _audit(conn, state, token, endpoint, incoming, now, "attempt")
        try:
            result = endpoint.op(_authorised_call(conn, state, token, endpoint, incoming, now))
        except HTTPException as exc:
            outcome = _OUTCOMES.get(exc.status_code, "failure")
            _audit(conn, state, token, endpoint, incoming, now, outcome, exc.status_code, exc.detail)
            raise
        except Exception:
            _audit(conn, state, token, endpoint, incoming, now, "failure", 500, "Internal Server Error")
            raise
        _audit(conn, state, token, endpoint, incoming, now, "success", 200)
        return result


def _route(method: str, path: str, op: Callable[[ops.Call], Any], bucket: str) -> Route:
    endpoint = _Endpoint(name=op.__name__, bucket=bucket, op=op, write=method != "GET")

    async def handle(request: Request) -> Response:
        incoming = _Incoming(
            method=request.method,
            path=request.url.path,
            authorization=request.headers.getlist("authorization"),
            path_params=dict(request.path_params),
            query=dict(request.query_params),
        )
        body = await run_in_threadpool(_serve, request.app.state.sandbox, endpoint, incoming)
        return JSONResponse(body)

    return Route(API_PREFIX + path, handle, methods=[method], name=endpoint.name)


_PROJECT = "/projects/{project_id}"
_BUILD = _PROJECT + "/builds/{build_id}"
_JOB = _PROJECT + "/jobs/{job_id}"

ROUTES = [
    _route("GET", "/projects", ops.list_projects, "list_projects"),
    _route("GET", _PROJECT, ops.get_project, "list_projects"),
    _route("GET", _PROJECT + "/builds", ops.list_builds, "list_builds"),
    _route("GET", _BUILD, ops.get_build, "list_builds"),
    _route("GET", _BUILD + "/jobs", ops.list_jobs, "list_jobs"),
    _route("POST", _BUILD + "/restart", ops.restart_build, "trigger_build"),
    _route("DELETE", _BUILD + "/abort", ops.abort_build, "trigger_build"),
    _route("GET", _JOB, ops.get_job, "list_jobs"),
    _route("GET", _JOB + "/log", ops.get_job_log, "get_job_log"),
    _route("GET", _JOB + "/testruns", ops.get_job_testruns, "list_jobs"),
    _route("GET", _JOB + "/stats", ops.get_job_stats, "list_jobs"),
    _route("POST", _JOB + "/restart", ops.restart_job, "trigger_build"),
    _route("POST", _JOB + "/rerun", ops.rerun_job, "trigger_build"),
    _route("DELETE", _JOB + "/abort", ops.abort_job, "trigger_build"),
]


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    status = exc.status_code
    body: dict[str, Any] = {"message": {404: _NOT_FOUND, 405: _NOT_ALLOWED}.get(status, exc.detail)}
    if status in (400, 401, 429):
        body["status"] = status
    return JSONResponse(body, status_code=status, headers=exc.headers)


async def _server_error(request: Request, exc: Exception) -> Response:
    return JSONResponse({"message": "Internal Server Error"}, status_code=500)


exception_handlers: Mapping[Any, Callable[[Request, Exception], Any]] = {
    HTTPException: _http_error,
    Exception: _server_error,
}
