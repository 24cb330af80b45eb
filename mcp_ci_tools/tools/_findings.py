"""What a red build shows: failed tests, a bounded masked log, problem jobs, and the verdict in words."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, Field

from mcp_ci_tools.client import JobLog, TestRun
from mcp_ci_tools.domain import logtext
from mcp_ci_tools.domain.states import ACTIVE_STATES, FAILED_TEST_STATES
from mcp_ci_tools.domain.terminal import terminal_safe
from mcp_ci_tools.tools._attempts import Attempt
from mcp_ci_tools.tools._triage import Classification
from mcp_ci_tools.tools._views import BuildView, JobView, clip

__all__ = [
    "TESTS_PER_JOB",
    "BoundedLog",
    "ProblemJob",
    "TestView",
    "bounded_log",
    "summarize",
    "test_views",
]

TESTS_PER_JOB = 5
_STACK_LINES = 8
_STACK_CHARS = 1_500


class TestView(BaseModel):
    __test__ = False  # not a pytest class

    name: str | None
    suite: str | None
    state: str | None
    duration_s: float | None
    message: str | None
    stack: str | None = Field(description=f"the first {_STACK_LINES} lines of the stack trace")


def _stack(stack: str | None) -> str | None:
    if not stack:
        return None
    lines = terminal_safe(stack).split("\n")
    head = "\n".join(clip(line, 300) or "" for line in lines[:_STACK_LINES])
    if len(lines) > _STACK_LINES:
        head += f"\n… {len(lines) - _STACK_LINES} more lines"
    return clip(head, _STACK_CHARS)


def test_views(runs: list[TestRun], *, only_failed: bool, limit: int) -> tuple[list[TestView], int]:
    """Bounded views of test runs (failed first), and how many failed in all."""
    failed = [r for r in runs if r.state in FAILED_TEST_STATES]
    chosen = failed if only_failed else failed + [r for r in runs if r.state not in FAILED_TEST_STATES]
    views = [
        TestView(
            name=clip(r.name, 300),
            suite=clip(r.suite, 300),
            state=clip(r.state, 40),
            duration_s=r.duration,
            message=clip(r.message, 500),
            stack=_stack(r.stack),
        )
        for r in chosen[:limit]
    ]
    return views, len(failed)


@dataclass(frozen=True)
class BoundedLog:
    """A fetched log cut to budget and masked, in tail or grep mode."""

    text: str
    returned_bytes: int
    cut: bool
    masked_secrets: int
    first_line: int | None = None
    match_count: int | None = None
    shown_matches: int | None = None
    search_note: str | None = None


def bounded_log(log: JobLog, *, tail_lines: int, max_bytes: int, pattern: str | None = None) -> BoundedLog:
    if pattern is None:
        sliced = logtext.tail(log.text, tail_lines=tail_lines, max_bytes=max_bytes)
        return BoundedLog(
            text=sliced.text,
            returned_bytes=sliced.returned_bytes,
            cut=sliced.truncated,
            masked_secrets=sliced.masked_secrets,
            first_line=sliced.first_line,
        )
    found = logtext.grep(log.text, pattern, context=3, max_bytes=max_bytes)
    return BoundedLog(
        text=found.text,
        returned_bytes=found.returned_bytes,
        cut=found.truncated or not found.search_complete,
        masked_secrets=found.masked_secrets,
        match_count=found.match_count,
        shown_matches=found.shown_matches,
        search_note=None
        if found.search_complete
        else (
            f"The grep stopped after {found.searched_lines} of {found.total_lines} lines: the search may take "
            f"{logtext.GREP_TIME_LIMIT:g} s; match_count counts those lines only. Use a simpler pattern, or tail."
        ),
    )


class ProblemJob(BaseModel):
    job: JobView = Field(description="the job's latest attempt")
    failed_tests: list[TestView] = Field(description=f"up to {TESTS_PER_JOB} tests failing in that attempt")
    failed_tests_total: int | None = Field(description="null when test results were not fetched")
    log_tail: str | None = Field(
        description="masked end of the console (untrusted CI output); null if not fetched"
    )
    log_note: str | None
    attempts: list[Attempt] = Field(default=[], description="all attempts, oldest first, when retried")
    classification: Classification | None = Field(default=None, description="flaky or real, with evidence")


def _suggestion(problems: list[ProblemJob], counts: dict[str, int]) -> str:
    if not problems:
        if any(counts.get(state) for state in ACTIVE_STATES):
            return "Nothing has failed yet; jobs are still active. Check again later with get_build."
        return "No job is failing now. Nothing to restart."
    first = problems[0].job
    verdict = problems[0].classification
    if verdict is not None and verdict.kind == "deterministic_suspect":
        return f"'{first.name}' looks deterministic: {verdict.advice}"
    if verdict is not None and verdict.kind == "unknown":
        return f"Read the log of '{first.name}' first (get_job_log). {_actions_hint(first, counts)}"
    return _actions_hint(first, counts)


def _actions_hint(first: JobView, counts: dict[str, int]) -> str:
    actions = first.actions
    skipped = counts.get("skipped", 0)
    if actions.restart != "no" and skipped:
        return (
            f"Start with '{first.name}'. {skipped} job(s) were skipped because of failures: restart_job on "
            f"'{first.name}' re-runs it with its downstream jobs (restart: {actions.restart})."
        )
    if actions.rerun != "no":
        return f"Start with '{first.name}': rerun_job re-runs just that job (rerun: {actions.rerun})."
    if actions.restart != "no":
        return f"Start with '{first.name}': restart_job (restart: {actions.restart})."
    reasons = "; ".join(actions.reasons.values())
    return f"'{first.name}' cannot be restarted or rerun now ({reasons}). restart_build starts the whole build again."


def summarize(
    build: BuildView,
    counts: dict[str, int],
    problems: list[ProblemJob],
    total: int,
    *,
    recovered: list[str] | None = None,
) -> str:
    """The verdict on a build in a few sentences, ending with a suggested next action.

    `counts` are current counts (each job's latest attempt); `total` counts every attempt; `recovered` names
    the jobs that failed and then passed on a retry."""
    name = f"Build #{build.build_number}" if build.build_number is not None else f"Build {build.id}"
    branch = f" on {build.branch}" if build.branch else ""
    tally = ", ".join(f"{n} {state}" for state, n in counts.items()) or "no jobs"
    jobs = sum(counts.values())
    retries = f" ({total} attempts with retries)" if total != jobs else ""
    lines = [f"{name}{branch} is {build.status or 'without a status'}: {jobs} job(s){retries}, now {tally}."]
    if recovered:
        names = ", ".join(f"'{n}'" for n in recovered[:5])
        lines.append(f"Recovered on retry (failed, then passed; not a current failure): {names}.")
    for problem in problems[:3]:
        detail = f": {problem.job.message}" if problem.job.message else ""
        tests = f"; {problem.failed_tests_total} failed test(s)" if problem.failed_tests_total else ""
        tried = f" after {len(problem.attempts)} attempts" if len(problem.attempts) > 1 else ""
        lines.append(f"'{problem.job.name}' is {problem.job.state}{tried}{detail}{tests}.")
        if problem.classification is not None:
            lines.append(f"Kind: {problem.classification.kind.replace('_', ' ')}.")
    lines.append(_suggestion(problems, counts))
    return " ".join(lines)
