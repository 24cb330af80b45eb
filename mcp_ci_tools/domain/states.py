"""The states of InfraBox jobs and test runs, and the groups the tools reason with."""

from __future__ import annotations

__all__ = [
    "ACTIVE_STATES",
    "ATTENTION_ORDER",
    "FAILED_TEST_STATES",
    "JOB_STATES",
    "PROBLEM_STATES",
    "RESTARTABLE_STATES",
    "TERMINAL_STATES",
]

ACTIVE_STATES = frozenset({"queued", "scheduled", "running"})
TERMINAL_STATES = frozenset({"finished", "failure", "error", "skipped", "killed", "unstable"})
JOB_STATES = ACTIVE_STATES | TERMINAL_STATES
RESTARTABLE_STATES = frozenset({"error", "failure", "finished", "killed", "unstable"})

PROBLEM_STATES = ("failure", "error", "unstable", "killed")
"""Jobs an agent came to look at, most serious first."""

ATTENTION_ORDER = (*PROBLEM_STATES, "running", "scheduled", "queued")
"""The order jobs are listed in, so a cut list still shows what matters; other states come after."""

FAILED_TEST_STATES = frozenset({"failure", "error"})
"""Test runs (not jobs) that failed."""
