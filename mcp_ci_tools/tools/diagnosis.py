"""diagnose_build: why a build is red and what can be done, in one call with bounded work and output."""

from __future__ import annotations

import uuid

import anyio
from pydantic import BaseModel, Field

from mcp_ci_tools.client import InfraBoxError, Job, TestRun
from mcp_ci_tools.domain import logtext
from mcp_ci_tools.domain.failure_kinds import infrastructure_matches
from mcp_ci_tools.domain.states import PROBLEM_STATES, TERMINAL_STATES
from mcp_ci_tools.tools._args import BuildId, ProjectId
from mcp_ci_tools.tools._attempts import (
    ALL_COUNTS,
    CURRENT_COUNTS,
    HISTORY,
    JobGroup,
    JobHistory,
    current_counts,
    group_attempts,
    histories,
    recovered_names,
    superseded_ids,
)
from mcp_ci_tools.tools._deps import Deps
from mcp_ci_tools.tools._findings import (
    TESTS_PER_JOB,
    ProblemJob,
    bounded_log,
    console_uri,
    summarize,
    test_views,
)
from mcp_ci_tools.tools._host import ToolHost
from mcp_ci_tools.tools._read import ReadCall, build_with_jobs, read_annotations, run_read
from mcp_ci_tools.tools._triage import (
    MAX_RETRY_TESTRUNS,
    FlakyTest,
    Related,
    classify,
    flaky_tests,
    related_builds,
    runs_of,
)
from mcp_ci_tools.tools._views import (
    MAX_OUTPUT_BYTES,
    BuildView,
    JobView,
    fit,
    job_views,
    rendered_size,
    state_counts,
)

__all__ = ["MAX_LOG_FETCHES", "MAX_TESTRUN_FETCHES", "DiagnoseResult", "register"]

MAX_LOG_FETCHES = 10
MAX_TESTRUN_FETCHES = 30
_LOG_LINES, _LOG_BYTES = 25, 2_000
_CONCURRENT_FETCHES = 4
_MAX_FLAKY = 20


def _infrastructure(group: JobGroup, logs: dict[str, str]) -> bool:
    job = group.latest
    lines = [job.message or "", *logs.get(job.id, "").splitlines()]
    return bool(infrastructure_matches(lines, limit=1))


class DiagnoseResult(BaseModel):
    project_id: str
    build: BuildView
    summary: str = Field(description="the verdict in a few sentences, with a suggested next action")
    state_counts: dict[str, int] = Field(description=CURRENT_COUNTS)
    all_attempts_state_counts: dict[str, int] = Field(description=ALL_COUNTS)
    jobs_total: int = Field(description="job rows, every attempt included")
    problem_jobs: list[ProblemJob] = Field(
        description="jobs failing NOW (latest attempt failure, error, unstable or killed), in that order"
    )
    job_history: list[JobHistory] = Field(description=HISTORY)
    flaky_suspect_tests: list[FlakyTest] = Field(
        description="tests that failed in one attempt and passed in a later one: flaky suspects, not failing"
    )
    other_jobs: list[JobView] = Field(
        description="the remaining jobs and superseded attempts, active ones first"
    )
    untrusted: str
    left_out: list[str] = Field(description="what was not fetched or not shown, and why")


def register(server: ToolHost, deps: Deps) -> None:
    @server.tool(
        name="diagnose_build",
        title="Diagnose InfraBox build (start here)",
        description=(
            "START HERE when a build is red: why it failed and what to do, in one call. Jobs per state (retries "
            "by their latest attempt); failing jobs first with messages, failed tests, a masked log tail, the "
            "actions InfraBox would accept (restart_job, rerun_job, abort_job), and each failure classified "
            "(infrastructure, flaky or deterministic suspect, unknown) with evidence; a next step. Bounded: it "
            "says what it left out."
        ),
        annotations=read_annotations("Diagnose InfraBox build"),
    )
    async def diagnose_build(project_id: ProjectId, build_id: BuildId) -> DiagnoseResult:
        async def fetch(call: ReadCall) -> DiagnoseResult:
            build, page, ordered = await build_with_jobs(deps, call)
            jobs: list[Job] = page.items
            groups = group_attempts(jobs)
            failing = [g for g in groups if g.failed_now]
            problems = [g.latest for g in failing]
            left_out: list[str] = []
            key = call.key
            wanted_logs = min(len(problems), MAX_LOG_FETCHES)
            wanted_tests = min(len(problems), MAX_TESTRUN_FETCHES)
            log_slots = await deps.read_budgets.take_up_to(key, "get_job_log", wanted_logs)
            test_slots = await deps.read_budgets.take_up_to(key, "list_jobs", wanted_tests)
            if len(problems) > MAX_LOG_FETCHES:
                left_out.append(
                    f"logs of {len(problems) - MAX_LOG_FETCHES} problem job(s): at most 10 per call"
                )
            if log_slots < wanted_logs:
                left_out.append(
                    f"logs of {wanted_logs - log_slots} job(s): the get_job_log budget is used up"
                )
            if len(problems) > MAX_TESTRUN_FETCHES:
                left_out.append(
                    f"tests of {len(problems) - MAX_TESTRUN_FETCHES} problem job(s): at most 30 per call"
                )
            if test_slots < wanted_tests:
                left_out.append(
                    f"tests of {wanted_tests - test_slots} job(s): the list_jobs budget is used up"
                )
            # Earlier attempts of retried jobs (failing now or recovered), to tell flaky tests from failing ones.
            earlier = [
                j
                for g in groups
                if g.retried and (g.failed_now or g.recovered)
                for j in (g.jobs if g.recovered else g.jobs[:-1])
                if j.state in PROBLEM_STATES or j.state == "finished"
            ]
            wanted_retries = min(len(earlier), MAX_RETRY_TESTRUNS)
            retry_slots = await deps.read_budgets.take_up_to(key, "list_jobs", wanted_retries)
            if retry_slots < len(earlier):
                left_out.append(
                    f"tests of {len(earlier) - retry_slots} earlier attempt(s): at most {MAX_RETRY_TESTRUNS} "
                    "per call, within the list_jobs budget"
                )

            logs: dict[str, tuple[str | None, str | None]] = {}
            full_logs: dict[str, str] = {}
            runs: dict[str, list[TestRun] | None] = {}
            limiter = anyio.Semaphore(_CONCURRENT_FETCHES)

            async def fetch_log(job: Job) -> None:
                async with limiter:
                    try:
                        log = await call.client.get_job_log(
                            call.project, uuid.UUID(job.id), request_id=call.request_id
                        )
                    except (InfraBoxError, ValueError) as error:
                        logs[job.id] = (None, f"log not available ({type(error).__name__})")
                        return
                if not log.text:
                    archived = job.state in TERMINAL_STATES
                    logs[job.id] = (
                        None,
                        "log archived: not available through this API" if archived else "log empty",
                    )
                    return
                full_logs[job.id] = log.text
                view = bounded_log(log, tail_lines=_LOG_LINES, max_bytes=_LOG_BYTES)
                logs[job.id] = (view.text, f"last {_LOG_LINES} lines at most" if view.cut else None)

            async with anyio.create_task_group() as group:
                for job in problems[:log_slots]:
                    group.start_soon(fetch_log, job)
                group.start_soon(runs_of, call, problems[:test_slots] + earlier[:retry_slots], runs, limiter)

            related: list[Related] = []
            related_notes: list[str] = []
            unexplained = [g for g in failing if not _infrastructure(g, full_logs)]
            if unexplained:
                with_tests = {g.name for g in unexplained if runs.get(g.latest.id)}
                related, related_notes = await related_builds(
                    deps, call, build, {g.name for g in unexplained}, with_tests
                )
            left_out.extend(related_notes)

            now = deps.clock()
            views = {
                v.id: v for v in job_views(ordered, now, build_jobs=jobs, superseded=superseded_ids(groups))
            }
            problem_views = []
            for g in failing:
                job = g.latest
                failed, failed_total = (
                    test_views(found, only_failed=True, limit=TESTS_PER_JOB)
                    if (found := runs.get(job.id)) is not None
                    else ([], None)
                )
                tail_text, note = logs.get(job.id, (None, "log not fetched"))
                problem_views.append(
                    ProblemJob(
                        job=views[job.id],
                        failed_tests=failed,
                        failed_tests_total=failed_total,
                        log_tail=tail_text,
                        log_note=note,
                        log_resource=console_uri(project_id, job.id),
                        attempts=g.history().attempts if g.retried else [],
                        classification=classify(
                            g,
                            log_text=full_logs.get(job.id),
                            log_note=note,
                            runs=runs,
                            related=related,
                            related_notes=related_notes,
                        ),
                    )
                )
            shown_problems = fit(problem_views, MAX_OUTPUT_BYTES * 6 // 10)
            current_ids = {j.id for j in problems}
            others = [views[j.id] for j in ordered if j.id not in current_ids]
            every_history = histories(groups)
            history = fit(every_history, 20_000)
            if len(history) < len(every_history):
                left_out.append(
                    f"the history of {len(every_history) - len(history)} retried job(s) (20 kB cap)"
                )
            flaky = flaky_tests(groups, runs)[:_MAX_FLAKY]
            used = sum(rendered_size(p, 2) for p in shown_problems)
            used += sum(rendered_size(h, 2) for h in history) + sum(rendered_size(f, 2) for f in flaky)
            shown_others = fit(others, MAX_OUTPUT_BYTES - 10_000 - used)
            if len(shown_problems) < len(problem_views):
                left_out.append(
                    f"{len(problem_views) - len(shown_problems)} problem job(s) not shown (100 kB cap)"
                )
            if len(shown_others) < len(others):
                left_out.append(f"{len(others) - len(shown_others)} other job(s) not shown (100 kB cap)")
            build_view = BuildView.of(build)
            counts = current_counts(groups)
            total = max(page.total or 0, len(jobs))
            return DiagnoseResult(
                project_id=project_id,
                build=build_view,
                summary=summarize(
                    build_view, counts, problem_views, total, recovered=recovered_names(groups)
                ),
                state_counts=counts,
                all_attempts_state_counts=state_counts(jobs),
                jobs_total=total,
                problem_jobs=shown_problems,
                job_history=history,
                flaky_suspect_tests=flaky,
                other_jobs=shown_others,
                untrusted=logtext.UNTRUSTED_NOTICE,
                left_out=left_out,
            )

        return await run_read(
            deps,
            tool="diagnose_build",
            kind="build",
            ids={"project_id": project_id, "build_id": build_id},
            needs={"list_builds": 1, "list_jobs": 1},
            fetch=fetch,
            detail=lambda r: {"problem_jobs": len(r.problem_jobs), "left_out": len(r.left_out)},
        )
