"""The trigger pipeline: every restart, rerun and abort passes the same checks in one declared order.

    ids → toolset → project allow-list → permission → duplicate guard → restart-loop guard
        → confirmation → target unchanged since the user saw it → budget → audit `attempt` (durable)
        → send to InfraBox → audit `result`

`TRIGGER_CHECKS` declares the order of everything before the send, once. `run_trigger` applies it and
then sends; `would_send` previews it without changing anything, so the confirmation prompt asks only
about calls the checks would let through; `preview_trigger` is a dry run: every check's preview, the
target as it is now, and the request that would be sent, audited with outcome `dry_run`. A refusal before the send is audited as `denied` and sends
nothing; when the refusal is that the `attempt` record could not be written, the budget slot the call took
is given back. Once the request may have left, the `result` record is written whatever happens, cancellation
and crashes included.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Generic, Literal, NoReturn, TypeVar

import anyio
from mcp.server.mcpserver.exceptions import ToolError

from mcp_ci_tools.audit import AuditRecord, AuditUnavailable, Confirmation, Decision, Outcome
from mcp_ci_tools.client import Forbidden, InfraBoxError, OutcomeUnknown, TokenRejected, WriteAnswer
from mcp_ci_tools.guards import ConfirmationRefused, DedupeRecord, Duplicate, TargetChanged
from mcp_ci_tools.policy import (
    BudgetExhausted,
    BudgetHit,
    BudgetState,
    PolicyDenied,
    StateStoreUnavailable,
    ToolsetDisabled,
    parse_id,
)
from mcp_ci_tools.tools._deps import Caller, Deps
from mcp_ci_tools.tools._errors import Target, audit_reason, to_tool_error
from mcp_ci_tools.tools._target import TargetState, look_at_target
from mcp_ci_tools.tools._triggers import ConfirmOutcome, Trigger, TriggerDone

__all__ = ["TRIGGER_CHECKS", "Check", "TriggerPreview", "preview_trigger", "run_trigger", "would_send"]

log = logging.getLogger("mcp_ci_tools.audit")

AnswerT = TypeVar("AnswerT", bound=WriteAnswer)


@dataclass
class _Call(Generic[AnswerT]):
    """One trigger call on its way through the checks; each check records what later steps need."""

    deps: Deps
    trigger: Trigger[AnswerT]
    caller: Caller
    project_id: str
    target_id: str
    confirmation: ConfirmOutcome
    request_id: str
    started: float
    shown: TargetState | None = None  # the target as the user saw it when asked to confirm
    project: uuid.UUID = field(init=False)
    target: uuid.UUID = field(init=False)
    dedupe_key: str | None = None
    lineage: str | None = None
    budget: BudgetState | None = None
    budget_hit: BudgetHit | None = None

    @property
    def fingerprint(self) -> str:
        """For people: errors and logs."""
        return self.caller.fingerprint

    @property
    def key(self) -> str:
        """For state: every budget, guard and record of this caller (guards name the parameter fingerprint)."""
        return self.caller.key

    @property
    def budget_left(self) -> BudgetState:
        if self.budget is None:
            raise RuntimeError("the budget check has not run")
        return self.budget

    def about(self) -> Target:
        return Target(
            action=self.trigger.action,
            kind=self.trigger.kind,
            project_id=self.project_id,
            target_id=self.target_id,
            infrabox_url=self.deps.infrabox_url,
            token_fingerprint=self.fingerprint,
            caller_brings_token=self.caller.brings_own_token,
        )

    def record(
        self,
        event: Literal["attempt", "result"],
        *,
        decision: Decision,
        outcome: Outcome | None = None,
        reason: str | None = None,
        http_status: int | None = None,
        detail: dict[str, Any] | None = None,
    ) -> AuditRecord:
        kind = self.trigger.kind
        return AuditRecord(
            event=event,
            tool=self.trigger.tool,
            token=self.fingerprint,
            token_sha256=self.key,
            request_id=self.request_id,
            decision=decision,
            outcome=outcome,
            reason=reason,
            project_id=self.project_id,
            build_id=self.target_id if kind == "build" else None,
            job_id=self.target_id if kind == "job" else None,
            http_status=http_status,
            duration_ms=None if event == "attempt" else round((self.deps.clock() - self.started) * 1000, 3),
            confirmation=_AUDITED_CONFIRMATION[self.confirmation],
            detail=detail or {},
        )


# How the audit names each confirmation outcome; "not_asked" (the checks would refuse the call anyway, so
# nobody was asked) is left out of the record.
_AUDITED_CONFIRMATION: dict[ConfirmOutcome, Confirmation | None] = {
    "not_required": "not_required",
    "confirmed": "elicited",
    "declined": "declined",
    "cancelled": "cancelled",
    "unsupported": "unsupported",
    "not_asked": None,
}

_Step = Callable[[_Call[Any]], Awaitable[None]]


@dataclass(frozen=True)
class Check:
    """One step before the send: `apply` for the real call, `preview` for the confirmation question
    (None: the step is left out of the preview, because it acts or because it is what the preview is for)."""

    name: str
    apply: _Step
    preview: _Step | None


async def _ids(call: _Call[Any]) -> None:
    call.project = parse_id("project_id", call.project_id)
    call.target = parse_id(f"{call.trigger.kind}_id", call.target_id)


async def _toolset(call: _Call[Any]) -> None:
    if "trigger" not in call.deps.toolsets:
        raise ToolsetDisabled("trigger")


async def _project(call: _Call[Any]) -> None:
    call.deps.scope.check(call.project)


async def _permission(call: _Call[Any]) -> None:
    await call.deps.permission.check(call.key)


def _dedupe_key(call: _Call[Any]) -> str:
    arguments = {"project_id": str(call.project), f"{call.trigger.kind}_id": str(call.target)}
    return call.deps.dedupe.key(call.key, call.trigger.tool, arguments)


async def _claim(call: _Call[Any]) -> None:
    if call.deps.dedupe.enabled:
        key = _dedupe_key(call)
        await call.deps.dedupe.claim(key)
        call.dedupe_key = key


async def _no_identical_call(call: _Call[Any]) -> None:
    if call.deps.dedupe.enabled:
        await call.deps.dedupe.check(_dedupe_key(call))


async def _restart_loop(call: _Call[Any]) -> None:
    if call.trigger.loop_guarded:
        call.lineage = await call.deps.lineage.of(str(call.project), call.trigger.kind, str(call.target))
        await call.deps.restart_guard.check(call.key, call.lineage)


async def _confirmed(call: _Call[Any]) -> None:
    if call.trigger.tool in call.deps.confirm_tools and call.confirmation != "confirmed":
        raise ConfirmationRefused(call.confirmation)


async def _unchanged(call: _Call[Any]) -> None:
    """A confirmation holds for the target the user saw: if it changed meanwhile, nothing is sent."""
    if call.shown is None or call.confirmation != "confirmed":
        return
    try:
        now = await look_at_target(call.deps, call.trigger, call.project_id, call.target_id)
    except ToolError as error:
        raise TargetChanged(call.shown.summary, f"unknown: it could not be read again ({error})") from None
    if now.binding != call.shown.binding:
        raise TargetChanged(call.shown.summary, now.summary)


async def _take_budget(call: _Call[Any]) -> None:
    await call.deps.continuity.check()  # a budget the store lost cannot be trusted for a window
    call.budget, call.budget_hit = await call.deps.trigger_budget.take_refundable(call.key)


async def _budget_has_room(call: _Call[Any]) -> None:
    await call.deps.continuity.check()
    budget = call.deps.trigger_budget
    if not await budget.has_room(call.key):
        raise BudgetExhausted(budget.name, await budget.peek(call.key))


async def _audit_attempt(call: _Call[Any]) -> None:
    await call.deps.audit.write(call.record("attempt", decision="allowed"), durable=True)


TRIGGER_CHECKS: tuple[Check, ...] = (
    Check("id", _ids, preview=_ids),
    Check("toolset", _toolset, preview=_toolset),
    Check("project", _project, preview=_project),
    Check("permission", _permission, preview=_permission),
    Check("duplicate", _claim, preview=_no_identical_call),
    Check("loop", _restart_loop, preview=_restart_loop),
    Check("confirmation", _confirmed, preview=None),
    Check("unchanged", _unchanged, preview=None),
    Check("budget", _take_budget, preview=_budget_has_room),
    Check("audit", _audit_attempt, preview=None),
)


def _begin(
    deps: Deps, trigger: Trigger[AnswerT], project_id: str, target_id: str, **rest: Any
) -> _Call[AnswerT]:
    return _Call(
        deps=deps,
        trigger=trigger,
        caller=deps.caller(),
        project_id=project_id,
        target_id=target_id,
        started=deps.clock(),
        **rest,
    )


async def run_trigger(
    deps: Deps,
    trigger: Trigger[AnswerT],
    project_id: str,
    target_id: str,
    *,
    confirmation: ConfirmOutcome,
    shown: TargetState | None = None,
) -> TriggerDone[AnswerT]:
    """Run one trigger call through the checks and send it, or raise `ToolError`. `shown` is the target as
    the user saw it in the confirmation question, if one was asked."""
    call = _begin(
        deps,
        trigger,
        project_id,
        target_id,
        confirmation=confirmation,
        request_id=deps.new_request_id(),
        shown=shown,
    )
    try:
        for check in TRIGGER_CHECKS:
            await check.apply(call)
    except Duplicate as duplicate:
        return await _replay(call, duplicate)
    except (PolicyDenied, AuditUnavailable) as refusal:
        await _refuse(call, refusal)
    return await _send(call)


async def would_send(deps: Deps, trigger: Trigger[Any], project_id: str, target_id: str) -> bool:
    """Whether the checks would let this call through (reads state, changes nothing)."""
    call = _begin(deps, trigger, project_id, target_id, confirmation="not_asked", request_id="")
    try:
        for check in TRIGGER_CHECKS:
            if check.preview is not None:
                await check.preview(call)
    except PolicyDenied:
        return False
    return True


@dataclass(frozen=True)
class TriggerPreview:
    """What a dry run found: whether the call would be sent, the check that would refuse it and the refusal
    the agent would read, the request, the target as it is now, and whether the user would be asked."""

    would_send: bool
    refused_by: str | None
    refusal: str | None
    request: str | None
    target: str | None
    asks_user: bool
    budget: BudgetState
    request_id: str


async def preview_trigger(
    deps: Deps, trigger: Trigger[Any], project_id: str, target_id: str
) -> TriggerPreview:
    """A dry run: every check of the pipeline as a preview (no budget slot taken, nothing claimed), the
    target read now, and what would be sent; nothing is sent. Audited with outcome `dry_run`."""
    call = _begin(
        deps, trigger, project_id, target_id, confirmation="not_asked", request_id=deps.new_request_id()
    )
    refused_by: str | None = None
    refusal: PolicyDenied | None = None
    for check in TRIGGER_CHECKS:
        if check.preview is None:
            continue
        try:
            await check.preview(call)
        except PolicyDenied as denied:
            refused_by, refusal = check.name, denied
            break
    ids_valid = refused_by != "id"
    target: str | None = None
    if refused_by not in ("id", "toolset", "project"):
        try:
            target = (await look_at_target(deps, trigger, project_id, target_id)).summary
        except ToolError as error:
            target = f"could not be read: {error}"
    try:
        budget = await deps.trigger_budget.peek(call.key)
    except PolicyDenied as error:
        raise to_tool_error(error, call.about()) from None
    preview = TriggerPreview(
        would_send=refusal is None,
        refused_by=refused_by,
        refusal=None if refusal is None else _refusal_text(call, refusal),
        request=trigger.request(call.project, call.target) if ids_valid else None,
        target=target,
        asks_user=trigger.tool in deps.confirm_tools,
        budget=budget,
        request_id=call.request_id,
    )
    detail = {"dry_run": True, "would_send": preview.would_send, "refused_by": refused_by}
    record = call.record(
        "result",
        decision="allowed" if refusal is None else "denied",
        outcome="dry_run",
        reason=None if refusal is None else refusal.reason,
        detail={key: value for key, value in detail.items() if value is not None},
    )
    await deps.audit.write_or_log(record, durable=False)
    return preview


def _refusal_text(call: _Call[Any], refusal: PolicyDenied) -> str:
    """What the real call would answer; an identical call that succeeded is answered, not refused."""
    if isinstance(refusal, Duplicate) and refusal.record.state == "done":
        return (
            f"an identical {call.trigger.action} was sent {refusal.age_s:.0f} s ago and succeeded: the real call "
            "would not send it again and would answer with that call's result (replayed: true)."
        )
    return str(to_tool_error(refusal, call.about()))


async def _audit_denied(
    call: _Call[Any], refusal: PolicyDenied, detail: dict[str, Any] | None = None
) -> None:
    record = call.record("result", decision="denied", outcome="denied", reason=refusal.reason, detail=detail)
    # Nothing was sent: the record needs no sync of its own (a flood of refusals must not become one of
    # fsyncs); it is in the file before the answer, and the next durable record's fsync covers it.
    await call.deps.audit.write_or_log(record, durable=False)


async def _refuse(call: _Call[Any], refusal: PolicyDenied | AuditUnavailable) -> NoReturn:
    if call.dedupe_key is not None:
        await call.deps.dedupe.release(call.dedupe_key)
    if isinstance(refusal, PolicyDenied):
        await _audit_denied(call, refusal)
    else:
        log.error("audit log unavailable, refusing %s: %s", call.trigger.tool, refusal)
        await _give_back_budget(call)
    raise to_tool_error(refusal, call.about()) from None


async def _give_back_budget(call: _Call[Any]) -> None:
    """The `attempt` record could not be written, so nothing was sent: the budget slot goes back."""
    if call.budget_hit is None:
        return
    try:
        await call.deps.trigger_budget.refund(call.budget_hit)
    except StateStoreUnavailable:
        log.warning(
            "could not give back the trigger budget slot of %s: state store unavailable", call.fingerprint
        )


async def _replay(call: _Call[AnswerT], duplicate: Duplicate) -> TriggerDone[AnswerT]:
    first = duplicate.record
    await _audit_denied(call, duplicate, {"first_request_id": first.request_id} if first.request_id else None)
    if first.state != "done":
        raise to_tool_error(duplicate, call.about()) from None
    answer = _rebuilt(call.trigger, first)
    try:
        budget = await call.deps.trigger_budget.peek(call.key)
    except PolicyDenied as error:
        raise to_tool_error(error, call.about()) from None
    return TriggerDone(answer, budget, first.request_id or call.request_id, replayed_after_s=duplicate.age_s)


def _rebuilt(trigger: Trigger[AnswerT], record: DedupeRecord) -> AnswerT:
    names = {f.name for f in fields(trigger.answer)}
    try:
        return trigger.answer(**{k: v for k, v in (record.answer or {}).items() if k in names})
    except TypeError:  # a record written by another version of this server
        raise ToolError(
            "Not sent again: an identical call was sent just before; check the build's state."
        ) from None


async def _send(call: _Call[AnswerT]) -> TriggerDone[AnswerT]:
    sent_at = call.deps.clock()
    try:
        answer = await call.trigger.send(
            call.caller.client, call.project, call.target, request_id=call.request_id
        )
    except InfraBoxError as error:
        await _failed(call, error, sent_at)
    except BaseException as error:
        await _interrupted(call, error, sent_at)
        raise
    await _succeeded(call, answer, sent_at)
    return TriggerDone(answer, call.budget_left, call.request_id)


async def _count_restart(call: _Call[Any]) -> None:
    if call.lineage is not None:
        await call.deps.restart_guard.record(call.key, call.lineage)


async def _settle(call: _Call[Any], record: DedupeRecord) -> None:
    if call.dedupe_key is not None:
        await call.deps.dedupe.settle(call.dedupe_key, record)


async def _succeeded(call: _Call[AnswerT], answer: AnswerT, sent_at: float) -> None:
    fields_sent = asdict(answer)
    detail = {k: v for k, v in fields_sent.items() if k != "http_status" and v not in (None, [])}
    record = call.record(
        "result", decision="allowed", outcome="success", http_status=answer.http_status, detail=detail
    )
    await call.deps.audit.write_or_log(record, durable=True)
    await _count_restart(call)
    original = (call.trigger.kind, str(call.target))
    for created in answer.created():
        await call.deps.lineage.learn_same(str(call.project), created, original)
    await _settle(
        call, DedupeRecord(state="done", sent_at=sent_at, answer=fields_sent, request_id=call.request_id)
    )


async def _failed(call: _Call[Any], error: InfraBoxError, sent_at: float) -> NoReturn:
    unknown = isinstance(error, OutcomeUnknown)
    if isinstance(error, Forbidden) and error.kind == "no_trigger_permission":
        await call.deps.permission.learn_refusal(call.key)
    if isinstance(error, TokenRejected):
        await call.deps.rejected.remember(call.key)
    record = call.record(
        "result",
        decision="allowed",
        outcome="unknown" if unknown else "error",
        reason=audit_reason(error),
        http_status=error.status,
        detail={"infrabox_message": error.reason} if error.reason else None,
    )
    await call.deps.audit.write_or_log(record, durable=True)
    tool_error = to_tool_error(error, call.about())
    await _count_restart(call)
    state: Literal["failed", "unknown"] = "unknown" if unknown else "failed"
    await _settle(
        call, DedupeRecord(state=state, sent_at=sent_at, error=str(tool_error), request_id=call.request_id)
    )
    raise tool_error from None


async def _interrupted(call: _Call[Any], error: BaseException, sent_at: float) -> None:
    reason = "cancelled" if isinstance(error, anyio.get_cancelled_exc_class()) else "internal_error"
    record = call.record("result", decision="allowed", outcome="unknown", reason=reason)
    await call.deps.audit.write_or_log(record, durable=True)
    with anyio.CancelScope(shield=True):
        await _settle(call, DedupeRecord(state="unknown", sent_at=sent_at, request_id=call.request_id))
