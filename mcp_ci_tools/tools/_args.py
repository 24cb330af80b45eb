"""Argument types and output pieces shared by the tool modules."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field

from mcp_ci_tools.domain.ids import UUID_PATTERN
from mcp_ci_tools.policy import BudgetState

__all__ = ["BudgetOut", "BuildId", "JobId", "ProjectId", "replay_note"]

_UUID_SCHEMA = {"format": "uuid", "pattern": UUID_PATTERN}

# Ids are plain strings to pydantic: the tool body validates them, so a bad id is audited and answered
# with an actionable message instead of the SDK's raw validation error. The schema still says "uuid".
ProjectId = Annotated[
    str,
    Field(description="from list_projects", json_schema_extra=_UUID_SCHEMA),
]
BuildId = Annotated[str, Field(description="from list_builds", json_schema_extra=_UUID_SCHEMA)]
JobId = Annotated[str, Field(description="from get_build", json_schema_extra=_UUID_SCHEMA)]


class BudgetOut(BaseModel):
    """A budget: requests left in the sliding window and when the next slot frees."""

    limit: int = Field(description="requests allowed in any sliding window")
    remaining: int = Field(description="requests left in the current window")
    window_seconds: int
    seconds_until_next_slot: int = Field(description="0 when a request can be sent now")

    @classmethod
    def of(cls, state: BudgetState) -> BudgetOut:
        return cls(
            limit=state.limit,
            remaining=state.remaining,
            window_seconds=state.window_seconds,
            seconds_until_next_slot=state.seconds_until_next_slot,
        )


def replay_note(replayed_after_s: float | None) -> str:
    """Prefix for next_step when the answer is an identical earlier call's (duplicate guard)."""
    if replayed_after_s is None:
        return ""
    return (
        f"NOT SENT AGAIN: an identical call was sent {replayed_after_s:.0f} s ago; this is its answer "
        "(the duplicate guard, MCP_CI_DEDUPE_SECONDS). "
    )
