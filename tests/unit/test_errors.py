"""Every failure the model can meet has an actionable, secret-free message (the table must be complete)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from mcp_ci_tools import client, guards, policy
from mcp_ci_tools.audit import AuditUnavailable
from mcp_ci_tools.domain.logtext import OffsetOutOfRange, PatternTooSlow
from mcp_ci_tools.policy import BudgetState
from mcp_ci_tools.tools._errors import Target, audit_reason, to_tool_error
from tests.conftest import TOKEN

NEXT_STEP = re.compile(r"\b(Check|check|Retry|retry|Use|use|must|Wait|wait|Read tools still work)\b")


def _all_subclasses(base: type) -> list[type]:
    found: list[type] = []
    sub: type
    for sub in base.__subclasses__():
        found.append(sub)
        found.extend(_all_subclasses(sub))
    return found


def _instances(kind: type) -> list[Exception]:
    common: dict[str, Any] = {"status": 500, "reason": f"echo {TOKEN}", "request_id": "r-1"}
    if kind is client.Forbidden:
        return [kind("x", kind=k, **common) for k in ("project_not_enabled", "no_trigger_permission")]
    if kind is client.RateLimited:
        return [kind("x", retry_after_s=30, **common)]
    if issubclass(kind, client.InfraBoxError):
        return [kind("x", **common)]
    if kind is policy.InvalidId:
        return [kind("build_id", "../x")]
    if kind is policy.InvalidArgument:
        return [kind("grep", "not a valid Python regular expression (missing ), unterminated subpattern)")]
    if kind is policy.TriggerNotAllowed:
        return [kind(learned=False), kind(learned=True), kind(learned=True, recheck_at=1_800_003_600.0)]
    if kind is policy.ToolsetDisabled:
        return [kind("trigger")]
    if kind is policy.StateReset:
        return [kind(1_800_000_060.0)]
    if kind is policy.StateStoreUnavailable:
        return [kind("trigger budget: TimeoutError")]
    if kind is policy.BudgetExhausted:
        return [
            kind("trigger", BudgetState(limit=5, remaining=0, window_seconds=60, seconds_until_next_slot=12))
        ]
    if kind is guards.ProjectNotAllowed:
        return [kind("p", ("a1000000-0000-4000-8000-000000000001",))]
    if kind is guards.RestartLoop:
        return [kind(count=3, window_s=3600, retry_after_s=120, lineage="p:#42")]
    if kind is guards.Duplicate:
        return [
            kind(guards.DedupeRecord(state=state, sent_at=0.0, error=f"echo {TOKEN}"), 4.0)
            for state in ("in_flight", "failed", "unknown")
        ]
    if kind is guards.TargetChanged:
        return [
            kind("build #7, status failure, restart counter 1", "build #7, status running, restart counter 2")
        ]
    if kind is guards.ConfirmationRefused:
        return [kind(outcome) for outcome in ("declined", "cancelled", "unsupported", "not_asked")]
    if kind is AuditUnavailable:
        return [kind("audit log not writable (OSError: No space left on device)")]
    if kind is PatternTooSlow:
        return [kind("(a|a)*$", 2, 2.0, 2.0)]
    if kind is OffsetOutOfRange:
        return [kind(9_000, 0, 4_096), kind(10, 1_000, 5_000)]
    raise AssertionError(f"add {kind.__name__} to this test")


ERROR_CLASSES = [
    *_all_subclasses(client.InfraBoxError),
    *_all_subclasses(policy.PolicyDenied),
    AuditUnavailable,
    PatternTooSlow,
    OffsetOutOfRange,
]
TARGETS = [
    Target(
        action="restart",
        kind="build",
        project_id="p",
        target_id="b",
        infrabox_url="https://ib",
        token_fingerprint="sha256:abc",
    ),
    Target(action="read", kind="project", project_id="p", write=False),
]


@pytest.mark.parametrize("kind", ERROR_CLASSES, ids=lambda k: k.__name__)
@pytest.mark.parametrize("target", TARGETS, ids=["write", "read"])
def test_every_error_class_has_an_actionable_secret_free_message(kind: type, target: Target) -> None:
    for error in _instances(kind):
        message = str(to_tool_error(error, target))

        assert len(message) > 40
        assert NEXT_STEP.search(message), message
        assert TOKEN not in message
        assert TOKEN[7:] not in message
        assert audit_reason(error) not in ("", "error")


def test_the_infrabox_error_tree_is_the_documented_one() -> None:
    assert {k.__name__ for k in _all_subclasses(client.InfraBoxError)} == {
        "InfraBoxUnreachable",
        "OutcomeUnknown",
        "TokenRejected",
        "Forbidden",
        "NotFound",
        "NotPossibleNow",
        "RateLimited",
        "UpstreamBroken",
    }


def test_a_rejected_token_points_at_whoever_brought_it() -> None:
    rejected = client.TokenRejected("x", status=401, reason="token revoked", request_id="r-1")
    operator = str(
        to_tool_error(rejected, Target("read", "build", "p", token_fingerprint="sha256:0123456789ab"))
    )
    caller = str(
        to_tool_error(
            rejected,
            Target("read", "build", "p", token_fingerprint="sha256:0123456789ab", caller_brings_token=True),
        )
    )

    assert "this server's token" in operator and "INFRABOX_MCP_TOKEN" in operator
    assert caller.startswith("InfraBox rejected your token (sha256:0123456789ab)")
    assert "valid token of your own" in caller and "in the Authorization header, scheme Bearer" in caller
    assert "INFRABOX_MCP_TOKEN" not in caller and "operator" not in caller
