"""MCP Tasks (`io.modelcontextprotocol/tasks`, SEP-2663) for `wait_for_build`: a handle at once, then polls.

A 2026-07-28 client whose `tools/call` declares the extension in its per-request capabilities gets a
`CreateTaskResult` for `wait_for_build` instead of a bounded wait; any other client (and every 2025-11-25
connection) gets the bounded wait. The task is a record in the state store (memory, or Redis shared by
every replica), so any replica answers `tasks/get` and a task outlives the replica that created it.

There is no background worker: a `tasks/get` that finds the task due (at most one look per
`pollIntervalMs`) takes the task's poll lock (`set` only-if-absent, with a TTL), reads the record again,
looks at the build once within the caller's `list_jobs` read budget, and writes the record back. Every
write of an existing record happens under that lock, so two replicas polling at once cannot both look, and
a `tasks/cancel` that finds the lock taken leaves a flag the next poll applies. Cancelling ends the wait,
never the build.

A task belongs to the caller that created it: another caller's `tasks/get` gets the same "not found"
error as a wrong id. Records are keyed by a hash of the task id and expire with the task (`ttlMs`); a task
watches its build for half its TTL at most (30 minutes at most), and keeps its result for the rest.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.extension import Extension, MethodBinding
from mcp.server.mcpserver import require_client_extension
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.tools import Tool
from mcp.shared.exceptions import MCPError
from mcp.types import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    CallToolRequestParams,
    CallToolResult,
    RequestParams,
    TextContent,
)
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from mcp_ci_tools.audit import AuditRecord
from mcp_ci_tools.domain.timestamps import rfc3339
from mcp_ci_tools.policy import BudgetExhausted, PolicyDenied, parse_id
from mcp_ci_tools.state import State, StateUnavailable
from mcp_ci_tools.tools._deps import Deps
from mcp_ci_tools.tools._read import run_read
from mcp_ci_tools.tools._waiting import NEEDS, Look, conclude, look, poll_floor

__all__ = ["TASKS_EXTENSION", "TOOL", "Status", "TaskParams", "TaskRecord", "TaskWaits"]

log = logging.getLogger("mcp_ci_tools.tasks")

TASKS_EXTENSION = "io.modelcontextprotocol/tasks"
TOOL = "wait_for_build"
_MAX_WATCH_S = 1800.0  # a task watches its build at most this long (MAX_TIMEOUT_S of wait_for_build)
_LOCK_TTL_S = 120.0  # a poll lock outlives any one look (InfraBox calls have their own deadline)
_KEEP_EXPIRED_S = 60.0  # an expired task still answers "expired" (not "not found") this long

Status = Literal["working", "completed", "failed", "cancelled"]


class TaskParams(RequestParams):
    task_id: str


@dataclass(frozen=True)
class TaskRecord:
    """What the state store keeps for one task (JSON)."""

    owner: str  # who may see it, and whose read budget its looks spend: `Caller.key`
    fingerprint: str  # the owner's token fingerprint, for the audit
    project_id: str
    build_id: str
    created: float
    updated: float
    deadline: float  # when the task stops watching the build
    expires: float  # created + ttl
    poll_interval_s: float
    status: Status = "working"
    message: str | None = None
    polls: int = 0
    next_look: float = 0.0
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None

    def dump(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def load(cls, text: str) -> TaskRecord:
        return cls(**json.loads(text))


class TaskWaits(Extension):
    """Serves `wait_for_build` as a task to clients that declare `io.modelcontextprotocol/tasks`."""

    identifier = TASKS_EXTENSION

    def __init__(
        self, deps: Deps, state: State, *, ttl_s: float, new_task_id: Callable[[], str] | None = None
    ):
        self._deps = deps
        self._state = state
        self._ttl_s = ttl_s
        self._new_task_id = new_task_id or (lambda: secrets.token_urlsafe(24))
        self._function: Callable[..., Any] | None = None
        self._built: Tool | None = None

    def learn(self, name: str, fn: Callable[..., Any]) -> None:
        """Know the `wait_for_build` function, to render its results exactly as the SDK does."""
        if name == TOOL:
            self._function = fn  # built at the first task: start-up builds every tool once, in the SDK

    @property
    def _tool(self) -> Tool | None:
        if self._built is None and self._function is not None:
            self._built = Tool.from_function(self._function, name=TOOL)
        return self._built

    def methods(self) -> list[MethodBinding]:
        versions = frozenset(MODERN_PROTOCOL_VERSIONS)
        return [
            MethodBinding("tasks/get", TaskParams, self._get, versions),
            MethodBinding("tasks/update", TaskParams, self._update, versions),
            MethodBinding("tasks/cancel", TaskParams, self._cancel, versions),
        ]

    def _owner(self) -> str:
        """Whom a task belongs to: the caller's token, by its full SHA-256 (`Caller.key`)."""
        return self._deps.caller().key

    # --- tools/call ------------------------------------------------------------------------------------

    async def intercept_tool_call(
        self, params: CallToolRequestParams, ctx: ServerRequestContext[Any, Any], call_next: CallNext
    ) -> HandlerResult:
        if params.name != TOOL or not _declares_tasks(ctx) or self._tool is None:
            return await call_next(ctx)
        arguments = params.arguments or {}
        project_id, build_id = str(arguments.get("project_id", "")), str(arguments.get("build_id", ""))
        try:  # ids the bounded wait would refuse at once are refused by it, as for any client
            project = parse_id("project_id", project_id)
            parse_id("build_id", build_id)
            self._deps.scope.check(project)
        except PolicyDenied:
            return await call_next(ctx)
        now = self._deps.clock()
        interval = poll_floor(self._deps)
        record = TaskRecord(
            owner=self._owner(),
            fingerprint=self._deps.caller().fingerprint,
            project_id=project_id,
            build_id=build_id,
            created=now,
            updated=now,
            deadline=now + min(_MAX_WATCH_S, self._ttl_s / 2),
            expires=now + self._ttl_s,
            poll_interval_s=interval,
            message="Waiting for the build to end.",
        )
        task_id = self._new_task_id()
        try:
            if not await self._state.set(
                _key(task_id), record.dump(), self._store_ttl(record), only_if_absent=True
            ):
                raise MCPError(code=INTERNAL_ERROR, message="Could not create the task")
        except StateUnavailable:
            raise MCPError(
                code=INTERNAL_ERROR, message="The task store is not answering; call again"
            ) from None
        await self._audit(record, task_id, "created")
        return {"resultType": "task", **_task_fields(task_id, record)}

    # --- tasks/* ---------------------------------------------------------------------------------------

    async def _get(self, ctx: ServerRequestContext[Any, Any], params: TaskParams) -> HandlerResult:
        require_client_extension(ctx, TASKS_EXTENSION)
        record = await self._find(params.task_id)
        if record.status == "working" and (
            self._deps.clock() >= record.next_look or await self._cancel_requested(params.task_id)
        ):
            record = await self._advance(params.task_id, record, cancel=False)
        return {"resultType": "complete", **_task_fields(params.task_id, record)}

    async def _update(self, ctx: ServerRequestContext[Any, Any], params: TaskParams) -> HandlerResult:
        require_client_extension(ctx, TASKS_EXTENSION)
        await self._find(params.task_id)  # this task asks for no input: nothing to apply
        return {"resultType": "complete"}

    async def _cancel(self, ctx: ServerRequestContext[Any, Any], params: TaskParams) -> HandlerResult:
        require_client_extension(ctx, TASKS_EXTENSION)
        record = await self._find(params.task_id)
        if record.status == "working":
            await self._store(
                lambda: self._state.set(_cancel_key(params.task_id), "1", self._store_ttl(record))
            )
            await self._advance(params.task_id, record, cancel=True)
        return {"resultType": "complete"}

    async def _find(self, task_id: str) -> TaskRecord:
        """The caller's live task `task_id`, or the JSON-RPC error SEP-2663 gives for an unknown one."""
        text = await self._store(lambda: self._state.get(_key(task_id)))
        record = None if text is None else TaskRecord.load(text)
        if record is None or not secrets.compare_digest(record.owner, self._owner()):
            raise MCPError(code=INVALID_PARAMS, message="Failed to retrieve task: Task not found")
        if self._deps.clock() >= record.expires:
            if await self._store(
                lambda: self._state.set(_lock_key(task_id), "expired", _LOCK_TTL_S, only_if_absent=True)
            ):
                await self._store(lambda: self._state.delete(_key(task_id)))
                if record.status == "working":
                    await self._audit(record, task_id, "expired")
            raise MCPError(code=INVALID_PARAMS, message="Failed to retrieve task: Task has expired")
        return record

    async def _advance(self, task_id: str, seen: TaskRecord, *, cancel: bool) -> TaskRecord:
        """Under the task's poll lock: apply a cancellation, or look at the build once if it is due."""
        lock = _lock_key(task_id)
        if not await self._store(lambda: self._state.set(lock, "poll", _LOCK_TTL_S, only_if_absent=True)):
            return seen  # another request is polling it right now; its answer will be in the record
        try:
            text = await self._store(lambda: self._state.get(_key(task_id)))
            if text is None:
                return seen
            record = TaskRecord.load(text)
            if record.status != "working":
                return record
            # A cancel that found the lock taken left a flag: it is applied by the next request that gets it.
            cancel = cancel or await self._cancel_requested(task_id)
            if not cancel:
                if self._deps.clock() < record.next_look:
                    return record
                record = await self._look(task_id, record)
                cancel = record.status == "working" and await self._cancel_requested(task_id)
            if cancel:
                record = replace(
                    record,
                    status="cancelled",
                    updated=self._deps.clock(),
                    message="Cancelled: the wait ended; the build was not touched (abort_build stops it).",
                )
                await self._audit(record, task_id, "cancelled")
            await self._store(lambda: self._state.set(_key(task_id), record.dump(), self._store_ttl(record)))
            return record
        finally:
            await self._store(lambda: self._state.delete(lock))

    async def _cancel_requested(self, task_id: str) -> bool:
        return await self._store(lambda: self._state.get(_cancel_key(task_id))) is not None

    async def _look(self, task_id: str, record: TaskRecord) -> TaskRecord:
        now = self._deps.clock()
        try:
            await self._deps.read_budgets.reserve(record.owner, NEEDS)
        except BudgetExhausted as exhausted:
            return replace(
                record,
                updated=now,
                next_look=now + max(record.poll_interval_s, exhausted.retry_after_s),
                message=f"Still waiting: the '{exhausted.budget}' read budget is used up; the next look at the "
                f"build is in {exhausted.retry_after_s} s.",
            )
        polls = record.polls + 1
        try:
            last: Look = await run_read(
                self._deps,
                tool=TOOL,
                kind="build",
                ids={"project_id": record.project_id, "build_id": record.build_id},
                needs={},  # reserved above, so that a spent budget keeps the task working
                fetch=lambda call: look(self._deps, call),
                detail=lambda seen: {"ended": seen.ended, "task": _ref(task_id)},
            )
        except ToolError as error:  # what the synchronous call would have returned, as a completed task
            result = CallToolResult(
                content=[TextContent(type="text", text=f"Error executing tool {TOOL}: {error}")],
                is_error=True,
            )
            return await self._finished(
                task_id, record, polls, "completed", result=_wire(result), message=str(error)
            )
        except Exception:
            log.exception("a look at the build of a task failed")
            failure = "Internal error while waiting for the build"
            error_body: dict[str, Any] = {"code": INTERNAL_ERROR, "message": failure}
            return await self._finished(task_id, record, polls, "failed", error=error_body, message=failure)
        now = self._deps.clock()
        if not last.ended and now < record.deadline:
            return replace(
                record, polls=polls, updated=now, next_look=now + record.poll_interval_s, message=last.message
            )
        waited = conclude(
            self._deps,
            record.project_id,
            last,
            started=record.created,
            polls=polls,
            out_of_budget=False,
            note=None,
        )
        assert self._tool is not None  # a task is only created once the tool is known
        rendered = _wire(self._tool.fn_metadata.convert_result(waited))
        return await self._finished(
            task_id, record, polls, "completed", result=rendered, message=last.message
        )

    async def _finished(
        self,
        task_id: str,
        record: TaskRecord,
        polls: int,
        status: Status,
        *,
        message: str,
        result: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
    ) -> TaskRecord:
        done = replace(
            record,
            status=status,
            polls=polls,
            updated=self._deps.clock(),
            message=message,
            result=result,
            error=error,
        )
        await self._audit(
            done, task_id, status, is_error=bool(result and result.get("isError")) or error is not None
        )
        return done

    def _store_ttl(self, record: TaskRecord) -> float:
        return max(1.0, record.expires + _KEEP_EXPIRED_S - self._deps.clock())

    @staticmethod
    async def _store(operation: Callable[[], Any]) -> Any:
        try:
            return await operation()
        except StateUnavailable:
            raise MCPError(
                code=INTERNAL_ERROR, message="The task store is not answering; call again"
            ) from None

    async def _audit(self, record: TaskRecord, task_id: str, event: str, *, is_error: bool = False) -> None:
        audit = AuditRecord(
            event="result",
            tool=TOOL,
            token=record.fingerprint,
            token_sha256=record.owner,
            request_id=self._deps.new_request_id(),
            decision="allowed",
            outcome="error" if is_error else "success",
            project_id=record.project_id,
            build_id=record.build_id,
            duration_ms=round((self._deps.clock() - record.created) * 1000, 3),
            detail={"task": f"task_{event}", "task_ref": _ref(task_id), "polls": record.polls},
        )
        await self._deps.audit.write_or_log(audit, durable=False)


def _declares_tasks(ctx: ServerRequestContext[Any, Any]) -> bool:
    """A 2026-07-28 request whose own capabilities declare the extension (never a 2025-11-25 connection)."""
    if ctx.protocol_version not in MODERN_PROTOCOL_VERSIONS:
        return False
    capabilities = ctx.session.client_capabilities
    extensions = capabilities.extensions if capabilities else None
    return bool(extensions) and TASKS_EXTENSION in (extensions or {})


def _task_fields(task_id: str, record: TaskRecord) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "taskId": task_id,
        "status": record.status,
        "createdAt": rfc3339(record.created, milliseconds=True),
        "lastUpdatedAt": rfc3339(record.updated, milliseconds=True),
        "ttlMs": round((record.expires - record.created) * 1000),
        "pollIntervalMs": round(record.poll_interval_s * 1000),
    }
    if record.message is not None:
        fields["statusMessage"] = record.message
    if record.status == "completed" and record.result is not None:
        fields["result"] = record.result
    if record.status == "failed" and record.error is not None:
        fields["error"] = record.error
    return fields


def _wire(result: Any) -> dict[str, Any]:
    dumped: Mapping[str, Any] = result.model_dump(mode="json", by_alias=True, exclude_none=True)
    return dict(dumped)


def _digest(task_id: str) -> str:
    return hashlib.sha256(task_id.encode()).hexdigest()


def _ref(task_id: str) -> str:
    """How the audit names a task: not its id."""
    return _digest(task_id)[:12]


def _key(task_id: str) -> str:
    return f"task:{_digest(task_id)[:32]}"


def _lock_key(task_id: str) -> str:
    return f"task-lock:{_digest(task_id)[:32]}"


def _cancel_key(task_id: str) -> str:
    return f"task-cancel:{_digest(task_id)[:32]}"
