"""Flaky or real: each current failure of a build classified, with the evidence that led there.

Kinds, tried in this order (see `domain.failure_kinds`):
  infrastructure         a line of the job's message or fetched log matches `INFRA_PATTERNS`
  deterministic_suspect  a test failing now also failed in every earlier attempt of this build, in another
                         build of the same commit, or in the previous build of the branch (with no test data
                         on either side: the job itself failed there)
  flaky_suspect          a test failing now passed in an earlier attempt, or in another build of the same
                         commit (job-level: the job finished in another build of the same commit)
  unknown                none of the above could be shown; `note` says what was not available

Cross-build evidence is bounded: one list_builds call (the branch's builds, newest first), at most
`MAX_RELATED_BUILDS` of them (same commit first, then the previous build numbers of the branch) have their
jobs read, and at most `MAX_RELATED_TESTRUNS` test lists are read from them, all within the read budgets.
What was not read is said, never guessed.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

import anyio
from pydantic import BaseModel, Field

from mcp_ci_tools.client import Build, InfraBoxError, Job, TestRun
from mcp_ci_tools.domain.failure_kinds import ADVICE, FailureKind, infrastructure_matches
from mcp_ci_tools.domain.states import FAILED_TEST_STATES, PROBLEM_STATES
from mcp_ci_tools.tools._attempts import JobGroup, group_attempts
from mcp_ci_tools.tools._deps import Deps
from mcp_ci_tools.tools._read import ReadCall
from mcp_ci_tools.tools._views import clip

__all__ = [
    "MAX_RELATED_BUILDS",
    "MAX_RELATED_TESTRUNS",
    "MAX_RETRY_TESTRUNS",
    "Classification",
    "FlakyTest",
    "Related",
    "TestKey",
    "classify",
    "flaky_tests",
    "related_builds",
    "runs_of",
]

MAX_RELATED_BUILDS = 3
MAX_RELATED_TESTRUNS = 6
MAX_RETRY_TESTRUNS = 8
_EVIDENCE_ITEMS, _EVIDENCE_LINES, _EVIDENCE_CHARS = 6, 3, 240
_CONCURRENT = 4

TestKey = tuple[str, str]  # (suite, name)


class Classification(BaseModel):
    kind: FailureKind = Field(description="infrastructure, flaky_suspect, deterministic_suspect or unknown")
    evidence: list[str] = Field(description="the log lines (masked) or test/build facts that led to `kind`")
    advice: str = Field(description="what follows from the kind")
    note: str | None = Field(description="what could not be checked (why a kind is unknown)")


class FlakyTest(BaseModel):
    job: str | None = Field(description="the job (original name) the test ran in")
    name: str | None
    suite: str | None
    failed_in: list[str] = Field(description="attempts or builds where it failed")
    passed_in: list[str] = Field(description="attempts or builds of the same commit where it passed")


@dataclass
class Related:
    """Another build of the same branch: the same commit (a restart) or an earlier build number."""

    build: Build
    same_commit: bool
    jobs: list[Job] | None = None
    runs: dict[str, list[TestRun] | None] = field(default_factory=dict)  # by job id

    @property
    def label(self) -> str:
        restart = f" (restart {self.build.restart_counter})" if self.build.restart_counter else ""
        where = "of the same commit" if self.same_commit else f"of branch {clip(self.build.branch, 80)}"
        return f"build #{self.build.build_number}{restart} {where}"

    def latest(self, name: str | None) -> Job | None:
        if self.jobs is None:
            return None
        for group in group_attempts(self.jobs):
            if group.name == name:
                return group.latest
        return None


def _key(run: TestRun) -> TestKey:
    return (run.suite or "", run.name or "")


def _failed(runs: Sequence[TestRun] | None) -> set[TestKey]:
    return {_key(r) for r in runs or () if r.state in FAILED_TEST_STATES}


def _passed(runs: Sequence[TestRun] | None) -> set[TestKey]:
    return {_key(r) for r in runs or () if r.state not in FAILED_TEST_STATES} - _failed(runs)


def _test(key: TestKey) -> str:
    suite, name = key
    return f"`{clip(name, 160)}`" + (f" ({clip(suite, 80)})" if suite else "")


async def runs_of(
    call: ReadCall, jobs: Sequence[Job], into: dict[str, list[TestRun] | None], limiter: anyio.Semaphore
) -> None:
    """Fetch the test runs of `jobs` (their budget already taken) into `into`; None where a fetch failed."""

    async def one(job: Job) -> None:
        async with limiter:
            try:
                page = await call.client.list_testruns(
                    call.project, uuid.UUID(job.id), request_id=call.request_id
                )
            except (InfraBoxError, ValueError):
                into[job.id] = None
                return
        into[job.id] = page.items

    async with anyio.create_task_group() as group:
        for job in jobs:
            group.start_soon(one, job)


async def related_builds(
    deps: Deps, call: ReadCall, build: Build, names: set[str | None], with_tests: set[str | None]
) -> tuple[list[Related], list[str]]:
    """Builds of the same branch to compare with (bounded), their jobs and the test runs of `with_tests`
    job names, and notes on what could not be read."""
    notes: list[str] = []
    if not build.branch:
        return [], ["other builds: this build has no branch to compare with"]
    if not await deps.read_budgets.take_up_to(call.key, "list_builds", 1):
        return [], ["other builds of the branch: the list_builds budget is used up"]
    try:
        page = await call.client.list_builds(
            call.project, request_id=call.request_id, branch=build.branch, limit=20
        )
    except InfraBoxError as error:
        return [], [f"other builds of the branch: not available ({type(error).__name__})"]
    same = [b for b in page.items if b.id != build.id and b.branch == build.branch]
    commit = [b for b in same if build.commit_id and b.commit_id == build.commit_id]
    previous: list[Build] = []
    if build.build_number is not None:
        numbers = sorted(
            {
                b.build_number
                for b in same
                if b.build_number is not None and b.build_number < build.build_number and b not in commit
            },
            reverse=True,
        )
        for number in numbers[:2]:  # the newest restart of each of the two previous build numbers
            newest = max((b for b in same if b.build_number == number), key=lambda b: b.restart_counter or 0)
            previous.append(newest)
    chosen = [Related(b, True) for b in commit[:MAX_RELATED_BUILDS]]
    chosen += [Related(b, False) for b in previous[: MAX_RELATED_BUILDS - len(chosen)]]
    if len(commit) + len(previous) > len(chosen):
        notes.append(f"other builds: only {MAX_RELATED_BUILDS} of the branch were compared")
    slots = await deps.read_budgets.take_up_to(call.key, "list_jobs", len(chosen))
    if slots < len(chosen):
        notes.append(f"jobs of {len(chosen) - slots} other build(s): the list_jobs budget is used up")
    chosen = chosen[:slots]
    limiter = anyio.Semaphore(_CONCURRENT)

    async def jobs_of(related: Related) -> None:
        async with limiter:
            try:
                listed = await call.client.list_jobs(
                    call.project, uuid.UUID(related.build.id), request_id=call.request_id
                )
            except (InfraBoxError, ValueError):
                return
        related.jobs = listed.items

    async with anyio.create_task_group() as group:
        for related in chosen:
            group.start_soon(jobs_of, related)

    wanted = [
        (related, job)
        for related in chosen
        for name in names
        if name in with_tests and (job := related.latest(name)) is not None and job.state in _HAS_TESTS
    ][:MAX_RELATED_TESTRUNS]
    slots = await deps.read_budgets.take_up_to(call.key, "list_jobs", len(wanted))
    if slots < len(wanted):
        notes.append(
            f"tests of {len(wanted) - slots} job(s) of other builds: the list_jobs budget is used up"
        )
    fetched: dict[str, list[TestRun] | None] = {}
    await runs_of(call, [job for _, job in wanted[:slots]], fetched, limiter)
    for related, job in wanted[:slots]:
        related.runs[job.id] = fetched.get(job.id)
    return chosen, notes


_HAS_TESTS = frozenset({"finished", "failure", "unstable", "error"})


def classify(
    group: JobGroup,
    *,
    log_text: str | None,
    log_note: str | None,
    runs: dict[str, list[TestRun] | None],
    related: Sequence[Related],
    related_notes: Sequence[str],
) -> Classification:
    """The kind of one current failure (`group.failed_now`), from what diagnose_build fetched."""
    latest = group.latest
    lines = ([latest.message] if latest.message else []) + (log_text.splitlines() if log_text else [])
    matches = infrastructure_matches(lines, limit=_EVIDENCE_LINES)
    if matches:
        return Classification(
            kind="infrastructure",
            evidence=[f"{m.pattern.name}: {clip(m.line, _EVIDENCE_CHARS)}" for m in matches],
            advice=f"Not the code: {matches[0].pattern.advice}.",
            note=None if log_text is not None else f"log not scanned ({log_note or 'not fetched'})",
        )
    notes: list[str] = []
    if log_text is None:
        notes.append(f"log not scanned ({log_note or 'not fetched'})")
    earlier = group.jobs[:-1]
    now_runs = runs.get(latest.id)
    failing = _failed(now_runs)
    flaky: list[str] = []
    deterministic: list[str] = []
    if failing:
        for key in sorted(failing):
            passed_in = [j.name or "?" for j in earlier if key in _passed(runs.get(j.id))]
            passed_in += [r.label for r in related if r.same_commit and key in _passed(_runs_there(r, group))]
            failed_in = [j.name or "?" for j in earlier if key in _failed(runs.get(j.id))]
            failed_before = [r.label for r in related if key in _failed(_runs_there(r, group))]
            if passed_in:
                flaky.append(
                    f"test {_test(key)} fails now ({latest.name}) but passed in {', '.join(passed_in)}"
                )
            elif (earlier and len(failed_in) == len(earlier)) or failed_before:
                where = [*failed_in, *failed_before]
                deterministic.append(
                    f"test {_test(key)} fails now ({latest.name}) and failed in {', '.join(where)}"
                )
        if any(runs.get(j.id) is None for j in earlier):
            notes.append("tests of some earlier attempts were not read")
    else:
        why = "test results not read" if now_runs is None else "no failed test recorded"
        notes.append(f"{why}: compared the job's state only")
        if earlier and all(j.state in PROBLEM_STATES for j in earlier):
            states = ", ".join(f"{j.name} ({j.state})" for j in group.jobs)
            deterministic.append(f"job failed in every attempt: {states}")
        for r in related:
            there = r.latest(group.name)
            if there is None:
                continue
            if r.same_commit and there.state == "finished":
                flaky.append(f"job {clip(group.name, 160)} finished in {r.label}")
            elif there.state in PROBLEM_STATES:
                deterministic.append(f"job {clip(group.name, 160)} also ended {there.state} in {r.label}")
    if deterministic:
        kind: FailureKind = "deterministic_suspect"
        evidence = deterministic + flaky
    elif flaky:
        kind, evidence = "flaky_suspect", flaky
    else:
        kind, evidence = "unknown", []
        notes.insert(0, "no infrastructure pattern in the message or log")
        if not earlier and not related:
            notes.append("no retry and no other build of the commit or branch to compare with")
        else:
            notes.append("no retry or other build showed the same test failing or passing")
    notes.extend(related_notes if kind == "unknown" else ())
    return Classification(
        kind=kind,
        evidence=[clip(e, _EVIDENCE_CHARS) or "" for e in evidence[:_EVIDENCE_ITEMS]],
        advice=ADVICE[kind],
        note="; ".join(notes) or None,
    )


def _runs_there(related: Related, group: JobGroup) -> list[TestRun] | None:
    job = related.latest(group.name)
    return None if job is None else related.runs.get(job.id)


def flaky_tests(groups: Sequence[JobGroup], runs: dict[str, list[TestRun] | None]) -> list[FlakyTest]:
    """Tests that failed in one attempt of a job and passed in a later one (within this build)."""
    found: list[FlakyTest] = []
    for group in groups:
        if not group.retried:
            continue
        for index, job in enumerate(group.jobs):
            later = group.jobs[index + 1 :]
            for key in sorted(_failed(runs.get(job.id))):
                passed_in = [j.name or "?" for j in later if key in _passed(runs.get(j.id))]
                if not passed_in or any(f.name == key[1] and f.suite == key[0] for f in found):
                    continue
                failed_in = [j.name or "?" for j in group.jobs if key in _failed(runs.get(j.id))]
                found.append(
                    FlakyTest(
                        job=clip(group.name, 200),
                        name=clip(key[1], 300),
                        suite=clip(key[0], 300) or None,
                        failed_in=[clip(n, 200) or "?" for n in failed_in],
                        passed_in=[clip(n, 200) or "?" for n in passed_in],
                    )
                )
    return found
