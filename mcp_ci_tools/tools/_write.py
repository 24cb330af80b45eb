"""The trigger pipeline, in one place and one order:

    ids → permission → budget → audit `attempt` (durable) → InfraBox → audit `result` → answer

Each refusal before the send is audited as `denied` and sends nothing. Once the request may have left,
the `result` record is written whatever happens, cancellation and crashes included.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any, Generic, Literal, TypeVar

import anyio

from mcp_ci_tools.audit import AuditRecord, AuditUnavailable, Outcome
from mcp_ci_tools.client import Forbidden, InfraBoxError, OutcomeUnknown, WriteAnswer
from mcp_ci_tools.policy import BudgetState, PolicyDenied, describe_value, parse_id
from mcp_ci_tools.tools._deps import Deps
from mcp_ci_tools.tools._errors import Target, audit_reason, to_tool_error

__all__ = ["TriggerDone", "run_trigger"]

log = logging.getLogger("mcp_ci_tools.audit")

AnswerT = TypeVar("AnswerT", bound=WriteAnswer)


@dataclass(frozen=True)
class TriggerDone(Generic[AnswerT]):
    """A trigger InfraBox accepted: its answer, the budget left after it, and the request id sent."""

    answer: AnswerT
    budget: BudgetState
    request_id: str


def audit_id(value: str) -> str:
    """An id as the audit log may hold it: as given when short and secret-free, else a description."""
    return value if len(value) <= 64 and "ib_mcp_" not in value else describe_value(value)


def write_or_log(deps: Deps, record: AuditRecord, *, durable: bool) -> None:
    """For records after a decision: a failure must not hide the outcome, so the line goes to stderr instead."""
    try:
        deps.audit.write(record, durable=durable)
    except AuditUnavailable as error:
        log.error("audit record not written (%s); record follows: %s", error, deps.audit.render(record))


async def _run_trigger(
    deps: Deps,
    *,
    tool: str,
    action: str,
    kind: Literal["build", "job"],
    project_id: str,
    target_id: str,
    send: Callable[..., Awaitable[AnswerT]],
) -> TriggerDone[AnswerT]:
    caller = deps.caller()
    request_id = deps.new_request_id()
    started = deps.clock()
    target = Target(
        action=action,
        kind=kind,
        project_id=project_id,
        target_id=target_id,
        infrabox_url=deps.infrabox_url,
        token_fingerprint=caller.fingerprint,
    )

    def record(
        event: Literal["attempt", "result"],
        *,
        decision: Literal["allowed", "denied"],
        outcome: Outcome | None = None,
        reason: str | None = None,
        http_status: int | None = None,
        detail: dict[str, Any] | None = None,
    ) -> AuditRecord:
        return AuditRecord(
            event=event,
            tool=tool,
            token=caller.fingerprint,
            request_id=request_id,
            decision=decision,
            outcome=outcome,
            reason=reason,
            project_id=audit_id(project_id),
            build_id=audit_id(target_id) if kind == "build" else None,
            job_id=audit_id(target_id) if kind == "job" else None,
            http_status=http_status,
            duration_ms=None if event == "attempt" else round((deps.clock() - started) * 1000, 3),
            detail=detail or {},
        )

    try:
        project_uuid = parse_id("project_id", project_id)
        target_uuid = parse_id(f"{kind}_id", target_id)
        await deps.permission.check(caller.fingerprint)
        budget = await deps.trigger_budget.take(caller.fingerprint)
    except PolicyDenied as denied:
        write_or_log(
            deps, record("result", decision="denied", outcome="denied", reason=denied.reason), durable=True
        )
        raise to_tool_error(denied, target) from None

    try:
        deps.audit.write(record("attempt", decision="allowed"), durable=True)
    except AuditUnavailable as error:
        log.error("audit log unavailable, refusing %s: %s", tool, error)
        raise to_tool_error(error, target) from None

    try:
        answer = await send(caller.client, project_uuid, target_uuid, request_id=request_id)
    except InfraBoxError as error:
        if isinstance(error, Forbidden) and error.kind == "no_trigger_permission":
            await deps.permission.learn_refusal(caller.fingerprint)
        write_or_log(
            deps,
            record(
                "result",
                decision="allowed",
                outcome="unknown" if isinstance(error, OutcomeUnknown) else "error",
                reason=audit_reason(error),
                http_status=error.status,
                detail={"infrabox_message": error.reason} if error.reason else None,
            ),
            durable=True,
        )
        raise to_tool_error(error, target) from None
    except BaseException as error:
        reason = "cancelled" if isinstance(error, anyio.get_cancelled_exc_class()) else "internal_error"
        write_or_log(
            deps, record("result", decision="allowed", outcome="unknown", reason=reason), durable=True
        )
        raise

    detail = {
        key: value
        for key, value in asdict(answer).items()
        if key != "http_status" and value not in (None, [])
    }
    write_or_log(
        deps,
        record(
            "result", decision="allowed", outcome="success", http_status=answer.http_status, detail=detail
        ),
        durable=True,
    )
    return TriggerDone(answer, budget, request_id)


async def run_trigger(
    deps: Deps,
    *,
    tool: str,
    action: str,
    kind: Literal["build", "job"],
    project_id: str,
    target_id: str,
    send: Callable[..., Awaitable[AnswerT]],
) -> TriggerDone[AnswerT]:
    """Run one trigger call through the pipeline, or raise `ToolError`.

    `send` is the `InfraBoxClient` method to call, e.g. `InfraBoxClient.restart_build`; it is called on the
    caller's own client as `send(client, project_uuid, target_uuid, request_id=...)`.
    """
    with deps.inflight:
        return await _run_trigger(
            deps, tool=tool, action=action, kind=kind, project_id=project_id, target_id=target_id, send=send
        )
