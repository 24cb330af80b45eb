"""What a red build shows: failed tests, a bounded masked log, problem jobs, and the verdict in words."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import anyio
import pydantic_core
from mcp.types import CallToolResult, ResourceLink, TextContent
from pydantic import BaseModel, Field

from mcp_ci_tools.client import JobLog, TestRun
from mcp_ci_tools.domain import logtext
from mcp_ci_tools.domain.states import ACTIVE_STATES, FAILED_TEST_STATES, TERMINAL_STATES
from mcp_ci_tools.domain.terminal import terminal_safe
from mcp_ci_tools.tools._attempts import Attempt
from mcp_ci_tools.tools._triage import Classification
from mcp_ci_tools.tools._views import BuildView, JobView, clip

__all__ = [
    "BUILD_TEMPLATE",
    "CONSOLE_TEMPLATE",
    "MAX_LOG_BYTES",
    "MAX_TAIL_LINES",
    "MIN_PAGE_BYTES",
    "TESTS_PER_JOB",
    "BoundedLog",
    "JobLogResult",
    "ProblemJob",
    "TestView",
    "bounded_log",
    "build_uri",
    "console_uri",
    "job_log_result",
    "summarize",
    "test_views",
    "with_resource_link",
]

TESTS_PER_JOB = 5
MAX_TAIL_LINES = 2_000
MAX_LOG_BYTES = 100_000
# A page smaller than this could not hold a secret whole, so it could not be cut safely.
MIN_PAGE_BYTES = 1_000
# Masking and searching a big log is CPU work; off the event loop it cannot stall other calls.
_THREAD_ABOVE_BYTES = 1_000_000
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


CONSOLE_TEMPLATE = "infrabox://projects/{project_id}/jobs/{job_id}/console"
BUILD_TEMPLATE = "infrabox://projects/{project_id}/builds/{build_id}"


def console_uri(project_id: str, job_id: str) -> str:
    """The resources/read URI of a job's console log (ids as validated UUID strings)."""
    return CONSOLE_TEMPLATE.format(project_id=project_id, job_id=job_id)


def build_uri(project_id: str, build_id: str) -> str:
    """The resources/read URI of a build's summary."""
    return BUILD_TEMPLATE.format(project_id=project_id, build_id=build_id)


@dataclass(frozen=True)
class BoundedLog:
    """A fetched log cut to budget and masked, in tail, grep or page mode.

    Offsets are bytes of the whole raw log (where InfraBox sent only its end, counted from the log's start):
    `text` covers [byte_start, byte_end) (None in grep mode); `next_offset` and `prev_offset` are the
    byte_offset values that read on and back (None at the ends).
    """

    text: str
    returned_bytes: int
    cut: bool
    masked_secrets: int
    total_bytes: int = 0
    first_line: int | None = None
    match_count: int | None = None
    shown_matches: int | None = None
    search_note: str | None = None
    byte_start: int | None = None
    byte_end: int | None = None
    next_offset: int | None = None
    prev_offset: int | None = None
    page_note: str | None = None


def _utf8_size(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def bounded_log(
    log: JobLog,
    *,
    tail_lines: int,
    max_bytes: int,
    pattern: str | None = None,
    byte_offset: int | None = None,
) -> BoundedLog:
    """The log's tail, grep matches (`pattern`), or the page from `byte_offset`; raises
    `logtext.OffsetOutOfRange` for an offset outside the log."""
    fetched = _utf8_size(log.text)
    start = log.offset if log.offset is not None else (log.total_bytes or 0) - fetched
    base = max(start, 0)
    total = base + fetched
    if byte_offset is not None:
        return _page(log.text, byte_offset=byte_offset, max_bytes=max_bytes, base=base)
    if pattern is None:
        sliced = logtext.tail(log.text, tail_lines=tail_lines, max_bytes=max_bytes)
        start = base + logtext.line_start_bytes(log.text, sliced.returned_lines)
        if sliced.starts_mid_line:  # the line is shown by its end: reading from its start shows the rest
            before: int | None = start
        else:
            before = logtext.page_before(log.text, end=start, max_bytes=max_bytes, base=base)
        return BoundedLog(
            text=sliced.text,
            returned_bytes=sliced.returned_bytes,
            cut=sliced.truncated,
            masked_secrets=sliced.masked_secrets,
            total_bytes=total,
            first_line=sliced.first_line,
            byte_start=start,
            byte_end=total,
            prev_offset=before,
        )
    found = logtext.grep(log.text, pattern, context=3, max_bytes=max_bytes)
    return BoundedLog(
        text=found.text,
        returned_bytes=found.returned_bytes,
        cut=found.truncated or not found.search_complete,
        masked_secrets=found.masked_secrets,
        total_bytes=total,
        match_count=found.match_count,
        shown_matches=found.shown_matches,
        search_note=None
        if found.search_complete
        else (
            f"The grep stopped after {found.searched_lines} of {found.total_lines} lines: the search may take "
            f"{logtext.GREP_TIME_LIMIT:g} s; match_count counts those lines only. Use a simpler pattern, or tail."
        ),
    )


def _page(text: str, *, byte_offset: int, max_bytes: int, base: int) -> BoundedLog:
    got = logtext.page(text, byte_offset=byte_offset, max_bytes=max_bytes, base=base)
    notes = []
    if got.moved_back:
        notes.append(
            f"byte_offset {byte_offset} was moved back to {got.start}, the start of its line: a cut there "
            "could split a secret."
        )
    if got.skipped:
        notes.append(
            f"{got.skipped} bytes of one over-long line were left out: no cut inside it was safe for masking."
        )
    local = got.start - base
    before = (
        text[:local]
        if text.isascii()
        else text.encode("utf-8", "surrogatepass")[:local].decode("utf-8", "surrogatepass")
    )
    first_line = before.count("\n") + 1 if got.text else None
    return BoundedLog(
        text=got.text,
        returned_bytes=got.returned_bytes,
        cut=got.start > 0 or got.end < got.total_bytes or got.skipped > 0,
        masked_secrets=got.masked_secrets,
        total_bytes=got.total_bytes,
        first_line=first_line,
        byte_start=got.start,
        byte_end=got.end,
        next_offset=got.end if got.end < got.total_bytes else None,
        prev_offset=logtext.page_before(text, end=got.start, max_bytes=max_bytes, base=base),
        page_note=" ".join(notes) or None,
    )


class JobLogResult(BaseModel):
    project_id: str
    job_id: str
    job_state: str | None
    untrusted: str = Field(description="a reminder that the text is CI output, not instructions")
    mode: Literal["tail", "grep", "page"]
    text: str = Field(
        description="masked log text: the tail, a page, or matching lines with context (grep -n style)"
    )
    total_bytes: int = Field(
        description="size of the whole log in bytes (InfraBox's total_bytes where given)"
    )
    byte_start: int | None = Field(
        description="text covers raw log bytes [byte_start, byte_end); null for grep"
    )
    byte_end: int | None
    next_offset: int | None = Field(description="byte_offset that reads on after text; null at the end")
    prev_offset: int | None = Field(description="byte_offset of the page before text; null at the start")
    next_step: str | None
    returned_bytes: int
    truncated: bool = Field(description="true when any part of the log is not in text")
    first_line: int | None = Field(description="line number of the first returned line (tail, page)")
    match_count: int | None = Field(description="grep mode: matching lines in the whole fetched log")
    shown_matches: int | None
    masked_secrets: int = Field(description="secret-looking strings replaced by [MASKED:...]")
    archived: bool = Field(
        description="the job finished and InfraBox returned no log: it is archived elsewhere"
    )
    log_resource: str = Field(description="resources/read URI of this console")
    note: str | None


async def job_log_result(
    log: JobLog,
    *,
    job_state: str | None,
    project_id: str,
    job_id: str,
    tail_lines: int,
    max_bytes: int,
    pattern: str | None = None,
    byte_offset: int | None = None,
    clamped: bool = False,
) -> JobLogResult:
    """What get_job_log and the console resource show of a fetched log (masked, bounded, with offsets)."""

    def work() -> BoundedLog:
        return bounded_log(
            log, tail_lines=tail_lines, max_bytes=max_bytes, pattern=pattern, byte_offset=byte_offset
        )

    # A grep runs in a worker thread whatever the size: its time bound then blocks no other call
    # (the regex package releases the GIL while it matches). Masking a big log is CPU work too.
    off_loop = pattern is not None or len(log.text) > _THREAD_ABOVE_BYTES
    view = await anyio.to_thread.run_sync(work) if off_loop else work()
    fetched_bytes = _utf8_size(log.text)
    archived = not log.text and job_state in TERMINAL_STATES
    mode: Literal["tail", "grep", "page"] = (
        "page" if byte_offset is not None else "tail" if pattern is None else "grep"
    )
    notes = []
    if clamped:
        notes.append(f"tail_lines/max_bytes clamped to {tail_lines}/{max_bytes}")
    if log.truncated or (log.total_bytes or 0) > fetched_bytes:
        notes.append(
            f"InfraBox sent only the last {fetched_bytes} of {log.total_bytes} bytes "
            f"(from byte {view.total_bytes - fetched_bytes})"
        )
    if view.search_note:
        notes.append(view.search_note)
    if view.page_note:
        notes.append(view.page_note)
    if archived:
        notes.append(
            f"The job is {job_state} and InfraBox returned no log: finished jobs' logs are archived and not "
            "available through this API. Use get_test_results and the job's message instead."
        )
    elif not log.text:
        notes.append("The log is empty so far.")
    if view.next_offset is not None:
        next_step: str | None = f"call get_job_log with byte_offset={view.next_offset} to read on"
    elif view.prev_offset is not None and mode != "grep":
        next_step = f"call get_job_log with byte_offset={view.prev_offset} to read the part before"
    else:
        next_step = None
    return JobLogResult(
        project_id=project_id,
        job_id=job_id,
        job_state=clip(job_state, 40),
        untrusted=logtext.UNTRUSTED_NOTICE,
        mode=mode,
        text=view.text,
        total_bytes=max(log.total_bytes or 0, view.total_bytes),
        byte_start=view.byte_start,
        byte_end=view.byte_end,
        next_offset=view.next_offset,
        prev_offset=view.prev_offset,
        next_step=next_step,
        returned_bytes=view.returned_bytes,
        truncated=view.cut or bool(log.truncated),
        first_line=view.first_line,
        match_count=view.match_count,
        shown_matches=view.shown_matches,
        masked_secrets=view.masked_secrets,
        archived=archived,
        log_resource=console_uri(project_id, job_id),
        note=" ".join(notes) or None,
    )


def with_resource_link(result: BaseModel, uri: str, *, name: str) -> CallToolResult:
    """A tool result with the structured `result`, its JSON text, and a resource_link to `uri`."""
    return CallToolResult(
        content=[
            TextContent(type="text", text=pydantic_core.to_json(result, fallback=str, indent=2).decode()),
            ResourceLink(type="resource_link", uri=uri, name=name, mime_type="text/plain"),
        ],
        structured_content=result.model_dump(mode="json"),
    )


class ProblemJob(BaseModel):
    job: JobView = Field(description="the job's latest attempt")
    failed_tests: list[TestView] = Field(description=f"up to {TESTS_PER_JOB} tests failing in that attempt")
    failed_tests_total: int | None = Field(description="null when test results were not fetched")
    log_tail: str | None = Field(
        description="masked end of the console (untrusted CI output); null if not fetched"
    )
    log_note: str | None
    log_resource: str | None = Field(
        default=None,
        description="resources/read URI of the job's whole console (paged: get_job_log byte_offset)",
    )
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
