"""A sandbox job's `definition`: how it will end once the scheduler runs it.

    {"outcome": "finished" | "failure" | "error" | "unstable",   # default "finished"
     "duration_s": 30.0,            # optional; else the scheduler's job_duration_s
     "message": "...",              # job.message when it does not finish cleanly
     "log": ["line", ...],          # console lines, printed while it runs
     "testruns": [{"name", "suite", "state", "duration", "message", "stack"}, ...],
     "stats": {"cpu": [...], "mem": [...]},
     "retry": {...},                # merged over the above for clones and restarted builds (flaky jobs)
     "jobs": [{"name", "type", "dependencies": [{"job": name, "on": [...]}], "definition"}]}
                                    # seed (Create Jobs) only: the job matrix it creates

InfraBox reads the real equivalent from infrabox.json; the sandbox keeps it on the job row.
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = [
    "clone_name",
    "console_for",
    "duration_s",
    "final_line",
    "load",
    "matrix_log",
    "outcome",
    "retried",
]

_OUTCOMES = ("finished", "failure", "error", "unstable")
_SUFFIX = re.compile(r"^(?P<base>.+)\.(?P<n>\d+)$")


def load(text: str | None) -> dict[str, Any]:
    value = json.loads(text or "{}")
    return value if isinstance(value, dict) else {}


def outcome(definition: dict[str, Any]) -> str:
    value = definition.get("outcome", "finished")
    return value if value in _OUTCOMES else "error"


def duration_s(definition: dict[str, Any], default: float) -> float:
    value = definition.get("duration_s")
    return default if value is None else max(0.0, float(value))


def retried(definition: dict[str, Any]) -> dict[str, Any]:
    """The definition a clone (restart, rerun, restarted build) runs with: `retry` merged over it."""
    base = {key: value for key, value in definition.items() if key != "retry"}
    return {**base, **definition.get("retry", {})}


def clone_name(name: str) -> str:
    """`test` → `test.1`, `test.1` → `test.2` (upstream's naming of restarted jobs)."""
    match = _SUFFIX.match(name)
    if match is None:
        return name + ".1"
    return f"{match['base']}.{int(match['n']) + 1}"


def final_line(definition: dict[str, Any]) -> str:
    result = outcome(definition)
    if result == "finished":
        return "Job finished successfully"
    if result == "unstable":
        tests = definition.get("testruns", [])
        failed = sum(1 for test in tests if test.get("state") in ("failure", "error"))
        return f"Job finished with {failed} failed test(s) of {len(tests)}: marking job unstable"
    return (
        f"Job {'failed' if result == 'failure' else 'errored'}: {definition.get('message') or 'exit code 1'}"
    )


def console_for(name: str, definition: dict[str, Any]) -> str:
    """The whole console of a job that has run to its end (used by the seed for finished jobs)."""
    lines = [f"Starting job {name}", *definition.get("log", []), final_line(definition)]
    return "".join(line + "\n" for line in lines)


def matrix_log(names: list[str]) -> str:
    """What a seed job prints when it creates the build's jobs."""
    return f"Parsing infrabox.json\nCreated {len(names)} job(s): {', '.join(names)}\n"
