"""The fixed value sets of every metric label, in one place.

A label value outside its set is reported as `other`, so no caller, id, URL or text can grow a metric's
series. Tests derive the sets from the code (tool names from the registered tools, reasons from every
`reason` the code writes, methods from `mcp_types`) and fail when the code has one the set lacks.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import get_args

from mcp_ci_tools.audit import Decision, Outcome

__all__ = [
    "AUDITED",
    "BUDGETS",
    "DECISIONS",
    "ENDPOINTS",
    "ERROR_TYPES",
    "HTTP_METHODS",
    "MCP_METHODS",
    "OTHER",
    "OUTCOMES",
    "REASONS",
    "RESOURCE_READS",
    "STATE_OPERATIONS",
    "STATUS_CLASSES",
    "TOOLS",
    "TRIGGER_TOOLS",
    "fixed",
]

OTHER = "other"

TRIGGER_TOOLS = frozenset({"restart_build", "abort_build", "restart_job", "rerun_job", "abort_job"})
TOOLS = TRIGGER_TOOLS | {
    "whoami",
    "list_projects",
    "list_builds",
    "get_build",
    "diagnose_build",
    "get_job",
    "get_job_log",
    "get_test_results",
    "wait_for_build",
}
# resources/read of the resource templates is audited (and counted) under these names.
RESOURCE_READS = frozenset({"resource:console", "resource:build"})
AUDITED = TOOLS | RESOURCE_READS
DECISIONS = frozenset(get_args(Decision))
OUTCOMES = frozenset(get_args(Outcome))
# The audit `reason` codes ("" when a record has none).
REASONS = frozenset(
    {
        "",
        # local refusals (policy, guards)
        "denied",
        "invalid_input",
        "toolset_disabled",
        "trigger_not_allowed",
        "rate_limited",
        "state_unavailable",
        "state_reset",
        "project_not_allowed",
        "restart_loop",
        "deduplicated",
        "declined",
        "confirmation_unsupported",
        "audit_unavailable",
        "grep_too_slow",
        "offset_out_of_range",
        "target_changed",
        # InfraBox's answers (tools._errors.audit_reason)
        "project_not_enabled",
        "no_trigger_permission",
        "token_rejected",
        "not_found",
        "not_possible_now",
        "upstream_rate_limited",
        "outcome_unknown",
        "unreachable",
        "upstream_error",
        "error",
        # a trigger that did not finish
        "cancelled",
        "internal_error",
    }
)
# Which budget refused a trigger call: the trigger budget per token, or the restart-loop guard per build.
BUDGETS = frozenset({"trigger", "restarts"})

# Every MCP method a client may send (requests and notifications of both protocol revisions).
MCP_METHODS = frozenset(
    {
        "initialize",
        "ping",
        "server/discover",
        "tools/list",
        "tools/call",
        "resources/list",
        "resources/read",
        "resources/templates/list",
        "resources/subscribe",
        "resources/unsubscribe",
        "prompts/list",
        "prompts/get",
        "completion/complete",
        "logging/setLevel",
        "subscriptions/listen",
        "tasks/get",
        "tasks/result",
        "tasks/list",
        "tasks/cancel",
        "notifications/initialized",
        "notifications/cancelled",
        "notifications/progress",
        "notifications/roots/list_changed",
        "notifications/elicitation/complete",
        "notifications/tasks/status",
    }
)
# `error.type` of the MCP semantic conventions: a tool result with isError, or the JSON-RPC error code.
ERROR_TYPES = frozenset(
    {
        "",
        "tool_error",
        "-32700",  # parse error
        "-32600",  # invalid request
        "-32601",  # method not found
        "-32602",  # invalid params
        "-32603",  # internal error
        "-32000",  # connection closed
        "-32001",  # request timeout
        "-32002",  # resource not found
        "-32020",  # header mismatch
        "-32021",  # missing client capability
        "-32022",  # unsupported protocol version
        "-32042",  # URL elicitation required
    }
)

# InfraBox endpoints, as the client's path templates.
ENDPOINTS = frozenset(
    "/api/v1/mcp/" + template
    for template in (
        "projects",
        "projects/{project_id}/builds",
        "projects/{project_id}/builds/{build_id}",
        "projects/{project_id}/builds/{build_id}/jobs",
        "projects/{project_id}/builds/{build_id}/restart",
        "projects/{project_id}/builds/{build_id}/abort",
        "projects/{project_id}/jobs/{job_id}",
        "projects/{project_id}/jobs/{job_id}/log",
        "projects/{project_id}/jobs/{job_id}/testruns",
        "projects/{project_id}/jobs/{job_id}/restart",
        "projects/{project_id}/jobs/{job_id}/rerun",
        "projects/{project_id}/jobs/{job_id}/abort",
    )
)
HTTP_METHODS = frozenset({"GET", "POST", "DELETE"})
# "error": no status line came (connection failure, timeout, a broken answer).
STATUS_CLASSES = frozenset({"1xx", "2xx", "3xx", "4xx", "5xx", "error"})

# What the state store was doing when Redis failed.
STATE_OPERATIONS = frozenset({"get", "set", "delete", "continuity", "ping", "start"})


def fixed(value: str | None, allowed: Collection[str]) -> str:
    """`value` if it is in `allowed` (None counts as ""), else `other`."""
    value = "" if value is None else value
    return value if value in allowed else OTHER
