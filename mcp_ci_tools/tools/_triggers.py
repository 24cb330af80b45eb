"""What a trigger tool is: its definition (`Trigger`), its annotations, and what a sent call gives back."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Generic, Literal, Protocol, TypeVar

from mcp.types import ToolAnnotations

from mcp_ci_tools.client import InfraBoxClient, WriteAnswer
from mcp_ci_tools.policy import BudgetState

__all__ = ["ConfirmOutcome", "Kind", "Trigger", "TriggerDone", "trigger_annotations"]

AnswerT = TypeVar("AnswerT", bound=WriteAnswer)
_AnswerT_co = TypeVar("_AnswerT_co", bound=WriteAnswer, covariant=True)
Kind = Literal["build", "job"]
ConfirmOutcome = Literal["not_required", "confirmed", "declined", "cancelled", "unsupported", "not_asked"]


class _Send(Protocol[_AnswerT_co]):
    """An `InfraBoxClient` write method, e.g. `InfraBoxClient.restart_build`."""

    def __call__(
        self, client: InfraBoxClient, project_id: uuid.UUID, target_id: uuid.UUID, /, *, request_id: str
    ) -> Awaitable[_AnswerT_co]: ...


@dataclass(frozen=True)
class Trigger(Generic[AnswerT]):
    """One trigger tool: its name, what it does in InfraBox's words, and the client call that sends it.

    `answer` is the type `send` returns; a replayed answer is rebuilt from it. `loop_guarded` tools
    count against the restart-loop guard. `method` and `path` (under `/api/v1/mcp`, with `{project_id}`
    and `{build_id}` or `{job_id}`) are what `send` sends, for a dry run to show.
    """

    tool: str
    action: str
    kind: Kind
    send: _Send[AnswerT]
    answer: type[AnswerT]
    loop_guarded: bool
    method: Literal["POST", "DELETE"]
    path: str

    def request(self, project_id: uuid.UUID, target_id: uuid.UUID) -> str:
        """The request `send` makes for these ids, e.g. `POST /api/v1/mcp/projects/…/builds/…/restart`."""
        path = self.path.format(project_id=project_id, **{f"{self.kind}_id": target_id})
        return f"{self.method} /api/v1/mcp/{path}"


def trigger_annotations(title: str, *, destructive: bool) -> ToolAnnotations:
    """Trigger tools change InfraBox and are never idempotent: a repeat restarts again."""
    return ToolAnnotations(
        title=title,
        read_only_hint=False,
        destructive_hint=destructive,
        idempotent_hint=False,
        open_world_hint=True,
    )


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

    @property
    def replayed(self) -> bool:
        return self.replayed_after_s is not None

    def next_step(self, advice: str) -> str:
        """`advice` for the agent, led by a warning when the answer is an earlier identical call's."""
        if self.replayed_after_s is None:
            return advice
        return (
            f"NOT SENT AGAIN: an identical call was sent {self.replayed_after_s:.0f} s ago; this is its answer "
            f"(the duplicate guard, MCP_CI_DEDUPE_SECONDS). {advice}"
        )
