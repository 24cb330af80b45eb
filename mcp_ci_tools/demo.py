"""`mcp-ci-tools demo`: a scripted agent session against the sandbox, printed as a transcript.

It starts the sandbox on a free loopback port, spawns `mcp-ci-tools` over stdio with the official SDK client
(exactly as an MCP client would), and plays: diagnose the red build, rerun a job, restart a job with its
downstream jobs, restart a build and watch it run, abort a running build, wait for a build as an MCP task
(a client that declares the Tasks extension polls tasks/get), then a refusal with a token that has no trigger
permission, the budget running out, and the audit lines written. Every step checks its
outcome; the exit status is non-zero if any step misbehaves, so the demo doubles as a smoke test.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import sys
import tempfile
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, Literal, TextIO

import anyio
from mcp import Client, StdioServerParameters
from mcp.client.extension import ClaimContext, ClientExtension, ResultClaim
from mcp.client.stdio import stdio_client
from mcp.types import CallToolResult, Request, RequestParams, Result, TextContent

from mcp_ci_tools.audit_cli import main as audit_command
from mcp_ci_tools.sandbox import SANDBOX_TOKENS, SEED, start_in_thread

__all__ = ["StepFailed", "main"]


class StepFailed(Exception):
    """A demo step did not behave as the product promises."""


class _Session:
    """One MCP client session, printing each call and checking its outcome."""

    def __init__(self, client: Client, out: TextIO) -> None:
        self.client = client
        self.out = out
        self.followed_build: str | None = None  # a restarted build, for the task-based wait

    async def call(
        self,
        tool: str,
        args: dict[str, Any],
        *,
        check: Callable[[dict[str, Any]], str] | None = None,
    ) -> dict[str, Any]:
        """Call `tool`, which must succeed; print `check`'s summary of its structured content and return it."""
        result = await self._call(tool, args, expect_error=False)
        content: dict[str, Any] = result.structured_content or {}
        summary = check(content) if check else ""
        if summary:
            print(f"  {summary}", file=self.out)
        return content

    async def refused(self, tool: str, args: dict[str, Any]) -> str:
        """Call `tool`, which must be refused; print and return the refusal's text."""
        text = _text(await self._call(tool, args, expect_error=True))
        print(f"  refused: {text.removeprefix(f'Error executing tool {tool}: ')}", file=self.out)
        return text

    async def _call(self, tool: str, args: dict[str, Any], *, expect_error: bool) -> CallToolResult:
        shown = ", ".join(f"{key}={_short(value)}" for key, value in args.items())
        print(f"\n> {tool}({shown})", file=self.out)
        result = await self.client.call_tool(tool, args)
        if bool(result.is_error) != expect_error:
            raise StepFailed(
                f"{tool}: expected {'an error' if expect_error else 'success'}, got: {_text(result)[:500]}"
            )
        return result


def _text(result: CallToolResult) -> str:
    """The text of a tool result's first content item ("" if it has none)."""
    if not result.content:
        return ""
    first = result.content[0]
    if not isinstance(first, TextContent):
        raise StepFailed(f"expected text content, got {first.type}")
    return first.text


def _short(value: Any) -> str:
    names = {
        SEED.payments: "payments-service",
        SEED.frontend: "web-frontend",
        SEED.failed_build: "#42",
        SEED.running_build: "#44",
        SEED.failed_test_job: "#42/test",
        SEED.unstable_test_job: "#43/test",
        SEED.frontend_e2e_job: "web-frontend#18/e2e",
    }
    if isinstance(value, str) and value in names:
        return names[value]
    return repr(value)


def _expect(condition: bool, message: str) -> None:
    if not condition:
        raise StepFailed(message)


def _server(env: dict[str, str], errlog: TextIO, extensions: list[ClientExtension] | None = None) -> Client:
    params = StdioServerParameters(command=sys.executable, args=["-m", "mcp_ci_tools"], env=env)
    return Client(stdio_client(params, errlog=errlog), extensions=extensions)


class _CreatedTask(Result):
    result_type: Literal["task"]
    task_id: str
    status: str
    status_message: str | None = None
    poll_interval_ms: int | None = None


class _TaskState(Result):
    task_id: str
    status: str
    status_message: str | None = None
    poll_interval_ms: int | None = None
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None


class _TaskId(RequestParams):
    task_id: str


class _GetTask(Request[_TaskId, Literal["tasks/get"]]):
    name_param: ClassVar[str | None] = "taskId"


class _Tasks(ClientExtension):
    """A client side of MCP Tasks (SEP-2663): follows a task with tasks/get to its result, printing each state."""

    identifier = "io.modelcontextprotocol/tasks"

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.states: list[str] = []

    def claims(self) -> list[ResultClaim[Any]]:
        return [ResultClaim(result_type="task", model=_CreatedTask, resolve=self._follow)]

    async def _follow(self, task: _CreatedTask, ctx: ClaimContext) -> CallToolResult:
        print(f"  task {task.task_id[:8]}… {task.status}: {task.status_message}", file=self.out)
        self.states.append(task.status)
        interval = (task.poll_interval_ms or 2000) / 1000
        while True:
            await anyio.sleep(interval)
            request = _GetTask(method="tasks/get", params=_TaskId(task_id=task.task_id))
            state = await ctx.session.send_request(request, _TaskState)
            print(f"  tasks/get: {state.status}: {state.status_message}", file=self.out)
            self.states.append(state.status)
            interval = (state.poll_interval_ms or 2000) / 1000
            if state.status == "completed" and state.result is not None:
                return CallToolResult.model_validate(state.result)
            _expect(state.status == "working", f"the task ended {state.status}: {state.error}")


async def _agent_session(s: _Session) -> None:
    P = SEED.payments

    def projects_listed(r: dict[str, Any]) -> str:
        _expect("payments-service" in {p["name"] for p in r["projects"]}, "payments-service not listed")
        return f"{r['returned']} projects: " + ", ".join(p["name"] for p in r["projects"])

    await s.call("list_projects", {}, check=projects_listed)

    def red_builds(r: dict[str, Any]) -> str:
        _expect(SEED.failed_build in {b["id"] for b in r["builds"]}, "build #42 is not listed as failed")
        return "red builds: " + ", ".join(f"#{b['build_number']} ({b['branch']})" for b in r["builds"])

    await s.call("list_builds", {"project_id": P, "status": "failure"}, check=red_builds)

    def diagnosis(r: dict[str, Any]) -> str:
        problems = {p["job"]["name"]: p for p in r["problem_jobs"]}
        _expect("test" in problems, "diagnose_build did not single out the failed test job")
        _expect(bool(problems["test"]["failed_tests"]), "diagnose_build found no failed tests")
        tests = ", ".join(t["name"] for t in problems["test"]["failed_tests"])
        return f"{r['summary']}\n  failed tests: {tests}"

    await s.call("diagnose_build", {"project_id": P, "build_id": SEED.failed_build}, check=diagnosis)

    def flaky(r: dict[str, Any]) -> str:
        kinds = {p["job"]["name"]: p["classification"] for p in r["problem_jobs"]}
        verdict = kinds.get("test") or {}
        _expect(
            verdict.get("kind") == "flaky_suspect", f"build #36's restart is not flaky_suspect: {verdict}"
        )
        return f"test: flaky_suspect\n  evidence: {verdict['evidence'][0]}\n  advice: {verdict['advice']}"

    await s.call("diagnose_build", {"project_id": P, "build_id": SEED.flaky_build}, check=flaky)

    def masked_log(r: dict[str, Any]) -> str:
        _expect(r["masked_secrets"] > 0, "no secret was masked in the log")
        text: str = r["text"]
        lines = text.replace("\n", "\n    ")[:900]
        return f"{r['match_count']} matching lines, {r['masked_secrets']} secret(s) masked:\n    {lines}"

    await s.call(
        "get_job_log",
        {
            "project_id": P,
            "job_id": SEED.failed_test_job,
            "grep": "FAIL|Error|Bearer|AKIA",
            "max_bytes": 1200,
        },
        check=masked_log,
    )

    def first_page(r: dict[str, Any]) -> str:
        _expect(r["mode"] == "page" and r["byte_start"] == 0, f"not the first page: {r['mode']}")
        _expect(r["next_offset"] is not None, "a 1,000-byte page of the log has no next page")
        return (
            f"bytes {r['byte_start']}-{r['byte_end']} of {r['total_bytes']}, next_offset {r['next_offset']}: "
            f"{r['next_step']}"
        )

    log_args = {"project_id": P, "job_id": SEED.failed_test_job, "max_bytes": 1000}
    page = await s.call("get_job_log", {**log_args, "byte_offset": 0}, check=first_page)

    def second_page(r: dict[str, Any]) -> str:
        _expect(r["byte_start"] == page["byte_end"], "the second page does not start where the first ended")
        return f"bytes {r['byte_start']}-{r['byte_end']}, prev_offset {r['prev_offset']}"

    await s.call("get_job_log", {**log_args, "byte_offset": page["next_offset"]}, check=second_page)

    def dry_run(r: dict[str, Any]) -> str:
        preview = r["dry_run"]
        _expect(preview["would_send"] is True, f"the dry run says it would not send: {r['next_step']}")
        _expect(r["new_build_id"] is None, "a dry run restarted the build")
        return f"{preview['preview']}; budget left {r['trigger_budget']['remaining']} (nothing sent)"

    await s.call(
        "restart_build", {"project_id": P, "build_id": SEED.failed_build, "dry_run": True}, check=dry_run
    )

    def rerun(r: dict[str, Any]) -> str:
        _expect(bool(r["new_job_id"]), "rerun_job returned no new job id")
        return f"clone {r['new_job_id']} queued; budget left {r['trigger_budget']['remaining']}"

    await s.call("rerun_job", {"project_id": P, "job_id": SEED.unstable_test_job}, check=rerun)

    def job_restarted(r: dict[str, Any]) -> str:
        _expect(r["jobs_restarted"] == 2, f"expected test and deploy cloned, got {r['jobs_restarted']}")
        return f"{r['jobs_restarted']} jobs cloned (test.1, deploy.1); budget left {r['trigger_budget']['remaining']}"

    await s.call("restart_job", {"project_id": P, "job_id": SEED.failed_test_job}, check=job_restarted)

    def build_restarted(r: dict[str, Any]) -> str:
        _expect(bool(r["new_build_id"]), "restart_build returned no build id")
        return (
            f"new build {r['new_build_id']} (restart_counter {r['restart_counter']}); "
            f"budget left {r['trigger_budget']['remaining']}"
        )

    restarted = await s.call(
        "restart_build", {"project_id": P, "build_id": SEED.failed_build}, check=build_restarted
    )

    def replayed(r: dict[str, Any]) -> str:
        _expect(r["replayed"] is True, "an identical restart a moment later was sent again")
        next_step: str = r["next_step"]
        return "duplicate guard: " + next_step.split(";")[0]

    again = await s.call("restart_build", {"project_id": P, "build_id": SEED.failed_build}, check=replayed)
    _expect(again["new_build_id"] == restarted["new_build_id"], "the repeated answer differs from the first")
    await _wait(s, P, restarted["new_build_id"])
    newer = await s.call(
        "restart_build",
        {"project_id": P, "build_id": restarted["new_build_id"]},
        check=lambda r: (
            f"restart of the restart: new build {r['new_build_id']} "
            f"(restart_counter {r['restart_counter']}); budget left {r['trigger_budget']['remaining']}"
        ),
    )
    looped = await s.refused("restart_build", {"project_id": P, "build_id": newer["new_build_id"]})
    _expect("Restart-loop guard" in looped, "the fourth restart of build #42's lineage was not refused")
    s.followed_build = newer["new_build_id"]
    await s.call(
        "abort_build",
        {"project_id": P, "build_id": SEED.running_build},
        check=lambda r: f"{r['jobs_aborted']} abort requests recorded (asynchronous)",
    )
    await anyio.sleep(1.0)

    def killed(r: dict[str, Any]) -> str:
        _expect(r["state_counts"].get("killed", 0) > 0, f"no job was killed: {r['state_counts']}")
        return f"jobs now: {r['state_counts']}"

    await s.call("get_build", {"project_id": P, "build_id": SEED.running_build}, check=killed)
    refused = await s.refused("abort_job", {"project_id": SEED.frontend, "job_id": SEED.frontend_e2e_job})
    _expect(
        "Trigger budget used up" in refused, "the sixth trigger in a minute was not refused by the budget"
    )


async def _wait(s: _Session, project_id: str, build_id: str) -> None:
    print(f"\n> wait_for_build(project_id=payments-service, build_id={build_id})", file=s.out)

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        print(f"  progress: {message}", file=s.out)

    result = await s.client.call_tool(
        "wait_for_build",
        {"project_id": project_id, "build_id": build_id, "timeout_s": 60},
        progress_callback=on_progress,  # parameter names as in the SDK's ProgressFnT protocol
    )
    content: dict[str, Any] = result.structured_content or {}
    _expect(not result.is_error and bool(content.get("ended")), f"the restarted build did not end: {content}")
    _expect(
        content["build"]["status"] == "finished", f"the restarted build ended {content['build']['status']}"
    )
    print(
        f"  ended {content['build']['status']} after {content['waited_s']} s: {content['state_counts']}",
        file=s.out,
    )


async def _wait_as_task(s: _Session, tasks: _Tasks, project_id: str, build_id: str) -> None:
    print(f"\n> wait_for_build(project_id=payments-service, build_id={build_id}) as an MCP task", file=s.out)
    result = await s.client.call_tool("wait_for_build", {"project_id": project_id, "build_id": build_id})
    content: dict[str, Any] = result.structured_content or {}
    _expect(tasks.states[:1] == ["working"], f"no task was created: {tasks.states}")
    _expect(not result.is_error and bool(content.get("ended")), f"the task's build did not end: {content}")
    print(
        f"  ended {content['build']['status']} after {content['polls']} look(s) at it: {content['state_counts']}",
        file=s.out,
    )


async def _no_permission_session(s: _Session) -> None:
    args = {"project_id": SEED.payments, "job_id": SEED.unstable_test_job}
    first = await s.refused("rerun_job", args)
    _expect("does not have trigger permission" in first, "InfraBox's 403 was not reported")
    again = await s.refused("rerun_job", args)
    _expect("answered earlier" in again, "the learned refusal was not applied locally")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def _print_metrics(port: int, out: TextIO) -> None:
    """The server's /metrics after the session's calls: what an operator's Prometheus would scrape."""

    def scrape() -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            text: str = answer.read().decode()
            return text

    text = await anyio.to_thread.run_sync(scrape)
    calls = [line for line in text.splitlines() if line.startswith("mcp_ci_tool_calls_total{")]
    _expect(bool(calls), "/metrics counted no tool calls")
    _expect(not any(t.token in text for t in SANDBOX_TOKENS.values()), "a token appears in /metrics")
    print(f"\n$ curl -s http://127.0.0.1:{port}/metrics | grep mcp_ci_tool_calls_total", file=out)
    for line in calls:
        print(f"  {line}", file=out)


def _print_audit(path: Path, out: TextIO) -> None:
    records = [json.loads(line) for line in path.read_text().splitlines()]
    print(f"\nAudit log {path} ({len(records)} records), trigger calls:", file=out)
    for r in records:
        if r["tool"] in ("restart_build", "abort_build", "restart_job", "rerun_job", "abort_job"):
            outcome = r.get("outcome") or "-"
            extra = f" reason={r['reason']}" if r.get("reason") else ""
            status = f" http={r['http_status']}" if r.get("http_status") else ""
            print(
                f"  {r['ts']} {r['token']} {r['event']:<7} {r['tool']:<13} {r['decision']:<7} {outcome}{status}{extra}",
                file=out,
            )
    text = path.read_text()
    _expect(not any(t.token in text for t in SANDBOX_TOKENS.values()), "a token appears in the audit log")
    print(f"\n$ mcp-ci-tools audit verify {path}", file=out)
    _expect(audit_command(["verify", str(path)], out=out) == 0, "the audit trail's hash chain is not whole")
    print(f"\n$ mcp-ci-tools audit stats {path}", file=out)
    audit_command(["stats", str(path)], out=out)


async def _run(out: TextIO, workdir: Path, errlog: TextIO) -> None:
    sandbox = start_in_thread(workdir / "sandbox.sqlite3", job_duration_s=0.5, tick_interval_s=0.1)
    try:
        audit = workdir / "audit.jsonl"
        base = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": os.environ.get("HOME", str(workdir)),
            "INFRABOX_URL": sandbox.url,
            "MCP_CI_ALLOW_TRIGGER": "true",
            "MCP_CI_AUDIT_LOG": str(audit),
            "MCP_CI_LOG_LEVEL": "WARNING",
        }
        print(
            f"Sandbox InfraBox at {sandbox.url}; agent connects with the 'trigger' token (alice).", file=out
        )
        metrics_port = _free_port()
        alice = {
            **base,
            "INFRABOX_MCP_TOKEN": SANDBOX_TOKENS["trigger"].token,
            "MCP_CI_METRICS_PORT": str(metrics_port),
        }
        async with _server(alice, errlog) as client:
            session = _Session(client, out)
            await _agent_session(session)
            await _print_metrics(metrics_port, out)
        assert session.followed_build is not None
        print(
            "\nThe agent's client now declares MCP Tasks: wait_for_build answers with a task to poll.",
            file=out,
        )
        tasks = _Tasks(out)
        async with _server(alice, errlog, [tasks]) as client:
            await _wait_as_task(_Session(client, out), tasks, SEED.payments, session.followed_build)
        print(
            "\nA second agent connects with the 'read_only' token (bob), declared as allowed to trigger:",
            file=out,
        )
        async with _server(
            {**base, "INFRABOX_MCP_TOKEN": SANDBOX_TOKENS["read_only"].token}, errlog
        ) as client:
            await _no_permission_session(_Session(client, out))
        _print_audit(audit, out)
    finally:
        sandbox.stop()


def _first(group: BaseExceptionGroup) -> BaseException:
    first = group.exceptions[0]
    return _first(first) if isinstance(first, BaseExceptionGroup) else first


def main(argv: list[str] | None = None, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    parser = argparse.ArgumentParser(
        prog="mcp-ci-tools demo",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the work directory (audit log, server log, sandbox database) and print where it is; "
        "without it, it is removed at the end",
    )
    try:
        keep = parser.parse_args(argv or []).keep
    except SystemExit as stop:  # --help is 0, a bad argument 2
        return int(stop.code or 0)
    workdir = Path(tempfile.mkdtemp(prefix="mcp-ci-tools-demo-"))
    try:
        status = _play(out, workdir)
    finally:
        if keep:
            print(f"\nKept {workdir}: audit.jsonl, server.log, sandbox.sqlite3.", file=out)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
            print(f"\nRemoved the work directory {workdir} (its audit log too; `--keep` keeps it).", file=out)
    return status


def _play(out: TextIO, workdir: Path) -> int:
    try:
        try:
            with open(workdir / "server.log", "w") as errlog:
                anyio.run(_run, out, workdir, errlog)
        except BaseExceptionGroup as group:
            failures = group.subgroup(StepFailed)
            if failures is None:
                raise
            raise _first(failures) from None
    except StepFailed as failure:
        print(f"\nDEMO FAILED: {failure}", file=out)
        server_log = workdir / "server.log"
        if server_log.exists():
            print(server_log.read_text()[-3000:], file=sys.stderr)
        return 1
    print("\nDemo finished: every step behaved as expected.", file=out)
    return 0
