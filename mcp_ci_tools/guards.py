"""Guardrails against patterns of calls: unscoped projects, restart loops and double triggers.

- `ProjectScope`: only the operator's allow-list of projects (`MCP_CI_PROJECTS`), if one is set.
- `Lineage`: which build lineage (project + build number) a build or job belongs to, learned only from what
  this server has already seen: read results and trigger results. It never makes a request of its own.
- `RestartGuard`: at most N restart/rerun requests per token and lineage in a sliding window.
- `Dedupe`: the same trigger call (tool and arguments) is not sent again while an identical one is in
  flight or was sent within the last few seconds; the first call's outcome is kept to be repeated.

State lives in the policy's `State` (memory, or Redis shared by replicas), keyed by token fingerprint.
Nothing InfraBox sends is kept at its own size: the lineage stores only ids that are canonical UUIDs (in
their canonical form, so a 12 MB id is never a key), and a dedupe record keeps at most `_MAX_ERROR_CHARS`
of an error text.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

from mcp_ci_tools.domain.ids import canonical_uuid
from mcp_ci_tools.policy import Budget, BudgetExhausted, PolicyDenied, StateStoreUnavailable
from mcp_ci_tools.state import State, StateUnavailable

__all__ = [
    "ConfirmationRefused",
    "Dedupe",
    "DedupeRecord",
    "Duplicate",
    "Kind",
    "Lineage",
    "ProjectNotAllowed",
    "ProjectScope",
    "RestartGuard",
    "RestartLoop",
    "TargetChanged",
]

Kind = Literal["build", "job"]
_MAX_HOPS = 16
_MAX_LEARNED_PER_READ = 500
_MAX_ERROR_CHARS = 2_000


class ConfirmationRefused(PolicyDenied):
    """The user did not confirm (declined, cancelled, or the client cannot ask)."""

    def __init__(self, outcome: str) -> None:
        super().__init__(f"confirmation {outcome}")
        self.outcome = outcome
        self.reason = "confirmation_unsupported" if outcome == "unsupported" else "declined"


class TargetChanged(PolicyDenied):
    """The target changed between the confirmation question the user answered and the send."""

    reason = "target_changed"

    def __init__(self, shown: str, now: str) -> None:
        super().__init__(f"target changed since the user confirmed: was {shown}, now {now}")
        self.shown = shown
        self.now = now


class ProjectNotAllowed(PolicyDenied):
    reason = "project_not_allowed"

    def __init__(self, project_id: str, allowed: tuple[str, ...]) -> None:
        super().__init__(f"project {project_id} is not in the allow-list")
        self.project_id = project_id
        self.allowed = allowed


class RestartLoop(PolicyDenied):
    reason = "restart_loop"

    def __init__(self, *, count: int, window_s: int, retry_after_s: int, lineage: str) -> None:
        super().__init__(f"{count} restarts of {lineage} within {window_s} s")
        self.count = count
        self.window_s = window_s
        self.retry_after_s = retry_after_s
        self.lineage = lineage


@dataclass(frozen=True)
class DedupeRecord:
    """What is known of the first of identical calls: in flight, or done with its answer or error text."""

    state: Literal["in_flight", "done", "failed", "unknown"]
    sent_at: float
    answer: dict[str, Any] | None = None
    error: str | None = None
    request_id: str | None = None

    def dumps(self) -> str:
        kept = dict(self.__dict__)
        if self.error is not None and len(self.error) > _MAX_ERROR_CHARS:
            kept["error"] = self.error[: _MAX_ERROR_CHARS - 1] + "…"
        return json.dumps(kept, separators=(",", ":"))

    @classmethod
    def loads(cls, raw: str) -> DedupeRecord:
        return cls(**json.loads(raw))


class Duplicate(PolicyDenied):
    reason = "deduplicated"

    def __init__(self, record: DedupeRecord, age_s: float) -> None:
        super().__init__(f"identical call {record.state} ({age_s:.0f} s ago)")
        self.record = record
        self.age_s = age_s


def _unavailable(error: StateUnavailable) -> StateStoreUnavailable:
    return StateStoreUnavailable(str(error))


class ProjectScope:
    def __init__(self, allowed: Iterable[str] = ()) -> None:
        self.allowed = tuple(str(uuid.UUID(project)) for project in allowed)

    def allows(self, project_id: str) -> bool:
        return not self.allowed or project_id.lower() in self.allowed

    def check(self, project: uuid.UUID) -> None:
        if not self.allows(str(project)):
            raise ProjectNotAllowed(str(project), self.allowed)


class Lineage:
    """Maps builds and jobs to their lineage through parent links: job → its build, clone → original,
    restarted build → the build it restarted; a build with a known number ends the chain."""

    def __init__(self, state: State, *, ttl_s: float) -> None:
        self._state = state
        self._ttl = ttl_s

    async def _set(self, key: str, value: str) -> None:
        with contextlib.suppress(StateUnavailable):  # best effort: without lineage the guard counts per id
            await self._state.set(key, value, self._ttl)

    async def learn_build(self, project: str, build_id: str, build_number: int | None) -> None:
        build = canonical_uuid(build_id)
        if build is not None and build_number is not None:
            await self._set(f"lineage:{project}:number:{build}", str(build_number))

    async def learn_jobs(self, project: str, jobs: Iterable[tuple[str, str | None]]) -> None:
        """Learn `(job_id, build_id)` pairs (bounded per read; pairs that are not both UUIDs are skipped)."""
        for count, (job_id, build_id) in enumerate(jobs):
            if count >= _MAX_LEARNED_PER_READ:
                break
            job, build = canonical_uuid(job_id), canonical_uuid(build_id)
            if job is not None and build is not None:
                await self._set(f"lineage:{project}:parent:job:{job}", f"build:{build}")

    async def learn_same(self, project: str, new: tuple[Kind, str], original: tuple[Kind, str]) -> None:
        """`new` (a restart's build, a clone job) belongs to the lineage of `original` (both UUIDs, or nothing)."""
        new_id, original_id = canonical_uuid(new[1]), canonical_uuid(original[1])
        if new_id is not None and original_id is not None:
            await self._set(f"lineage:{project}:parent:{new[0]}:{new_id}", f"{original[0]}:{original_id}")

    async def of(self, project: str, kind: Kind, target_id: str) -> str:
        node = f"{kind}:{target_id}"
        try:
            for _ in range(_MAX_HOPS):
                node_kind, node_id = node.split(":", 1)
                if node_kind == "build":
                    number = await self._state.get(f"lineage:{project}:number:{node_id}")
                    if number is not None:
                        return f"{project}:#{number}"
                parent = await self._state.get(f"lineage:{project}:parent:{node}")
                if parent is None:
                    break
                node = parent
        except StateUnavailable as error:
            raise _unavailable(error) from error
        return f"{project}:{node}"


class RestartGuard:
    """At most `limit` restart/rerun requests per token and lineage within `window_s` (0 turns it off)."""

    def __init__(self, budget: Budget | None) -> None:
        self._budget = budget

    async def check(self, fingerprint: str, lineage: str) -> None:
        if self._budget is None:
            return
        key = f"{fingerprint}|{lineage}"
        if not await self._budget.has_room(key):
            state = await self._budget.peek(key)
            raise RestartLoop(
                count=state.limit,
                window_s=state.window_seconds,
                retry_after_s=state.seconds_until_next_slot,
                lineage=lineage,
            )

    async def record(self, fingerprint: str, lineage: str) -> None:
        """Count a request that was sent (whatever the answer)."""
        if self._budget is None:
            return
        # Sent anyway: a concurrent call may have taken the last slot, or the store went away after the send.
        with contextlib.suppress(BudgetExhausted, StateStoreUnavailable):
            await self._budget.take(f"{fingerprint}|{lineage}")


class Dedupe:
    """Claims a trigger call before it is sent; an identical claim within the window is a `Duplicate`."""

    def __init__(
        self, state: State, *, window_s: float, in_flight_ttl_s: float, clock: Callable[[], float] = time.time
    ) -> None:
        self._state = state
        self.window_s = window_s
        self._in_flight_ttl = in_flight_ttl_s + window_s
        self._clock = clock

    @property
    def enabled(self) -> bool:
        return self.window_s > 0

    @staticmethod
    def key(fingerprint: str, tool: str, arguments: dict[str, str]) -> str:
        canonical = json.dumps(
            [tool, {k: v.lower() for k, v in sorted(arguments.items())}], separators=(",", ":")
        )
        return f"dedupe:{fingerprint}:{hashlib.sha256(canonical.encode()).hexdigest()[:32]}"

    async def claim(self, key: str) -> None:
        """Mark the call in flight, or raise `Duplicate` with what is known of the identical one."""
        if not self.enabled:
            return
        record = DedupeRecord(state="in_flight", sent_at=self._clock())
        try:
            if await self._state.set(key, record.dumps(), self._in_flight_ttl, only_if_absent=True):
                return
            raw = await self._state.get(key)
        except StateUnavailable as error:
            raise _unavailable(error) from error
        if raw is None:  # expired in between: claim again once
            await self.claim(key)
            return
        first = DedupeRecord.loads(raw)
        raise Duplicate(first, max(0.0, self._clock() - first.sent_at))

    async def check(self, key: str) -> None:
        """Raise `Duplicate` if an identical call is known, without claiming anything."""
        try:
            raw = await self._state.get(key)
        except StateUnavailable as error:
            raise _unavailable(error) from error
        if raw is not None:
            first = DedupeRecord.loads(raw)
            raise Duplicate(first, max(0.0, self._clock() - first.sent_at))

    async def release(self, key: str) -> None:
        """The call was refused before it was sent: forget it."""
        if self.enabled:
            with contextlib.suppress(StateUnavailable):
                await self._state.delete(key)

    async def settle(self, key: str, record: DedupeRecord) -> None:
        """Keep the sent call's outcome until `window_s` after it was sent."""
        if not self.enabled:
            return
        remaining = self.window_s - (self._clock() - record.sent_at)
        try:
            if remaining <= 0:
                await self._state.delete(key)
            else:
                await self._state.set(key, record.dumps(), max(remaining, 0.001))
        except StateUnavailable:
            pass  # the in-flight record expires by itself
