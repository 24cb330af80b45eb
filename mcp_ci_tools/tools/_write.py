"""The trigger pipeline, in one place and one order:

    ids → project allow-list → permission → duplicate guard → restart-loop guard → confirmation
        → budget → audit `attempt` (durable) → InfraBox → audit `result` → answer

Each refusal before the send is audited as `denied` and sends nothing. Once the request may have left,
the `result` record is written whatever happens, cancellation and crashes included.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any, Generic, Literal, TypeVar

import anyio
from mcp.server.mcpserver.exceptions import ToolError

from mcp_ci_tools import client as client_module
from mcp_ci_tools.audit import AuditRecord, AuditUnavailable, Outcome
from mcp_ci_tools.client import Forbidden, InfraBoxError, OutcomeUnknown, WriteAnswer
from mcp_ci_tools.domain.masking import describe_value, mask
from mcp_ci_tools.guards import ConfirmationRefused, DedupeRecord, Duplicate
from mcp_ci_tools.policy import BudgetState, PolicyDenied, parse_id
from mcp_ci_tools.tools._deps import Deps, counted_in_flight
from mcp_ci_tools.tools._errors import Target, audit_reason, to_tool_error

__all__ = [
    "LOOP_GUARDED",
    "ConfirmOutcome",
    "TriggerDone",
    "audit_id",
    "run_trigger",
    "would_send",
    "write_or_log",
]

log = logging.getLogger("mcp_ci_tools.audit")

AnswerT = TypeVar("AnswerT", bound=WriteAnswer)
ConfirmOutcome = Literal["not_required", "confirmed", "declined", "cancelled", "unsupported", "not_asked"]
LOOP_GUARDED = frozenset({"restart_build", "restart_job", "rerun_job"})


@dataclass(frozen=True)
class TriggerDone(Generic[AnswerT]):
    """A trigger InfraBox accepted: its answer, the budget left after it, and the request id sent.

    `replayed_after_s` is set when this call was not sent because an identical one was, that many seconds
    ago: the answer is that call's.
    """

    answer: AnswerT
    budget: BudgetState
    request_id: str
    replayed_after_s: float | None = None


def audit_id(value: str) -> str:
    """An id as the audit log may hold it: as given when short and secret-free, else a description."""
    return value if len(value) <= 64 and mask(value) == value else describe_value(value)


def write_or_log(deps: Deps, record: AuditRecord, *, durable: bool) -> None:
    """For records after a decision: a failure must not hide the outcome, so the line goes to stderr instead."""
    try:
        deps.audit.write(record, durable=durable)
    except AuditUnavailable as error:
        log.error("audit record not written (%s); record follows: %s", error, deps.audit.render(record))


def _new_ids(answer: WriteAnswer) -> list[tuple[Literal["build", "job"], str]]:
    return answer.created()


def _answer_record(answer: WriteAnswer, request_id: str, sent_at: float) -> DedupeRecord:
    return DedupeRecord(
        state="done",
        sent_at=sent_at,
        answer={"type": type(answer).__name__, **asdict(answer)},
        request_id=request_id,
    )


def _replayed_answer(record: DedupeRecord) -> WriteAnswer:
    fields = dict(record.answer or {})
    answer_type = getattr(client_module, str(fields.pop("type", "")), None)
    if not (isinstance(answer_type, type) and issubclass(answer_type, WriteAnswer)):
        raise ToolError("Not sent again: an identical call was sent just before; check the build's state.")
    return answer_type(**fields)


@counted_in_flight
async def run_trigger(
    deps: Deps,
    *,
    tool: str,
    action: str,
    kind: Literal["build", "job"],
    project_id: str,
    target_id: str,
    send: Callable[..., Awaitable[AnswerT]],
    confirmation: ConfirmOutcome,
) -> TriggerDone[AnswerT]:
    """Run one trigger call through the pipeline, or raise `ToolError`.

    `send` is the `InfraBoxClient` method to call, e.g. `InfraBoxClient.restart_build`; it is called on the
    caller's own client as `send(client, project_uuid, target_uuid, request_id=...)`. `confirmation` is what
    the user answered, for tools that must be confirmed.
    """
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

    def denied(refusal: PolicyDenied, detail: dict[str, Any] | None = None) -> None:
        write_or_log(
            deps,
            record("result", decision="denied", outcome="denied", reason=refusal.reason, detail=detail),
            durable=True,
        )

    dedupe_key: str | None = None
    lineage: str | None = None
    try:
        project_uuid = parse_id("project_id", project_id)
        target_uuid = parse_id(f"{kind}_id", target_id)
        project, target_key = str(project_uuid), str(target_uuid)
        deps.scope.check(project_uuid)
        await deps.permission.check(caller.fingerprint)
        if deps.dedupe.enabled:
            key = deps.dedupe.key(caller.fingerprint, tool, {"project_id": project, f"{kind}_id": target_key})
            await deps.dedupe.claim(key)
            dedupe_key = key
        lineage = await deps.lineage.of(project, kind, target_key) if tool in LOOP_GUARDED else None
        if lineage is not None:
            await deps.restart_guard.check(caller.fingerprint, lineage)
        if tool in deps.confirm_tools and confirmation != "confirmed":
            raise ConfirmationRefused(confirmation)
        budget = await deps.trigger_budget.take(caller.fingerprint)
        deps.audit.write(record("attempt", decision="allowed"), durable=True)
    except Duplicate as duplicate:
        first = duplicate.record
        denied(duplicate, {"first_request_id": first.request_id} if first.request_id else None)
        if first.state == "done":
            answer = _replayed_answer(first)
            state = await deps.trigger_budget.peek(caller.fingerprint)
            return TriggerDone(
                answer, state, first.request_id or request_id, replayed_after_s=duplicate.age_s
            )  # type: ignore[arg-type]
        raise to_tool_error(duplicate, target) from None
    except (PolicyDenied, AuditUnavailable) as refusal:
        if dedupe_key is not None:
            await deps.dedupe.release(dedupe_key)
        if isinstance(refusal, PolicyDenied):
            denied(refusal)
        else:
            log.error("audit log unavailable, refusing %s: %s", tool, refusal)
        raise to_tool_error(refusal, target) from None

    sent_at = deps.clock()
    try:
        answer = await send(caller.client, project_uuid, target_uuid, request_id=request_id)
    except InfraBoxError as error:
        unknown = isinstance(error, OutcomeUnknown)
        if isinstance(error, Forbidden) and error.kind == "no_trigger_permission":
            await deps.permission.learn_refusal(caller.fingerprint)
        write_or_log(
            deps,
            record(
                "result",
                decision="allowed",
                outcome="unknown" if unknown else "error",
                reason=audit_reason(error),
                http_status=error.status,
                detail={"infrabox_message": error.reason} if error.reason else None,
            ),
            durable=True,
        )
        tool_error = to_tool_error(error, target)
        if lineage is not None:
            await deps.restart_guard.record(caller.fingerprint, lineage)
        if dedupe_key is not None:
            state: Literal["failed", "unknown"] = "unknown" if unknown else "failed"
            await deps.dedupe.settle(
                dedupe_key,
                DedupeRecord(state=state, sent_at=sent_at, error=str(tool_error), request_id=request_id),
            )
        raise tool_error from None
    except BaseException as error:
        reason = "cancelled" if isinstance(error, anyio.get_cancelled_exc_class()) else "internal_error"
        write_or_log(
            deps, record("result", decision="allowed", outcome="unknown", reason=reason), durable=True
        )
        if dedupe_key is not None:
            with anyio.CancelScope(shield=True):
                await deps.dedupe.settle(
                    dedupe_key, DedupeRecord(state="unknown", sent_at=sent_at, request_id=request_id)
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
    if lineage is not None:
        await deps.restart_guard.record(caller.fingerprint, lineage)
    for new in _new_ids(answer):
        await deps.lineage.learn_same(project, new, (kind, target_key))
    if dedupe_key is not None:
        await deps.dedupe.settle(dedupe_key, _answer_record(answer, request_id, sent_at))
    return TriggerDone(answer, budget, request_id)


async def would_send(
    deps: Deps, *, tool: str, kind: Literal["build", "job"], project_id: str, target_id: str
) -> bool:
    """Whether the checks before confirmation would let this call through (reads state, changes nothing)."""
    caller = deps.caller()
    try:
        project_uuid = parse_id("project_id", project_id)
        target_key = str(parse_id(f"{kind}_id", target_id))
        deps.scope.check(project_uuid)
        await deps.permission.check(caller.fingerprint)
        if deps.dedupe.enabled:
            key = deps.dedupe.key(
                caller.fingerprint, tool, {"project_id": str(project_uuid), f"{kind}_id": target_key}
            )
            if await deps.dedupe.peek(key) is not None:
                return False
        if tool in LOOP_GUARDED:
            await deps.restart_guard.check(
                caller.fingerprint, await deps.lineage.of(str(project_uuid), kind, target_key)
            )
        return await deps.trigger_budget.has_room(caller.fingerprint)
    except PolicyDenied:
        return False
