"""Ways to reach a server in the benchmarks: raw httpx to the sandbox, and the SDK `Client` in-memory,
over stdio and over Streamable HTTP; plus our server started with `--transport streamable-http`."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import httpx2
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.server import MCPServer
from mcp.types import CallToolResult, TextContent
from pydantic import SecretStr

from benchmarks.harness import (
    BENCH_DIR,
    BenchError,
    Run,
    base_env,
    command,
    free_port,
    process_tree,
    stop_process,
    tail,
)
from mcp_ci_tools.audit import AuditSink
from mcp_ci_tools.config import Settings
from mcp_ci_tools.sandbox import SANDBOX_TOKENS
from mcp_ci_tools.server import build_server

__all__ = [
    "HttpServer",
    "NullSink",
    "RawInfraBox",
    "Unavailable",
    "call_ok",
    "in_process_server",
    "open_http",
    "open_inmemory",
    "open_stdio",
    "result_text",
    "start_floor_http",
    "start_ours_http",
    "stub_job_args",
]


class Unavailable(Exception):
    """A part of the comparison cannot run here (a missing peer, an HTTP transport not there yet)."""


class NullSink:
    """An `AuditSink` that keeps nothing: the reference for the cost of the audit log."""

    def write(self, line: str, *, durable: bool) -> None:
        return None


def bench_settings(infrabox_url: str, audit_log: Path, *, token: str | None = None) -> Settings:
    """Our settings against the sandbox (or a stub): trigger allowed, every budget lifted."""
    return Settings(
        infrabox_url=infrabox_url,
        infrabox_mcp_token=SecretStr(token or SANDBOX_TOKENS["trigger"].token),
        allow_trigger=True,
        trigger_per_minute=1000,
        read_per_minute=10_000,
        log_per_minute=10_000,
        audit_log=audit_log,
    )


def in_process_server(
    infrabox_url: str,
    audit_log: Path,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    audit_sink: AuditSink | None = None,
) -> MCPServer:
    return build_server(bench_settings(infrabox_url, audit_log), transport=transport, audit_sink=audit_sink)


def stub_job_args(project_id: str) -> dict[str, str]:
    """Arguments of a trigger against stubbed InfraBox: a new job id every call.

    The stub accepts any id; a fresh one keeps our dedupe guard (the same trigger again within seconds is
    answered from memory, without InfraBox) from turning the measurement into one of the guard.
    """
    return {"project_id": project_id, "job_id": str(uuid.uuid4())}


def result_text(result: CallToolResult, default: str = "") -> str:
    """The text of a tool result's first content item (`default` if it has none)."""
    if not result.content:
        return default
    first = result.content[0]
    return first.text if isinstance(first, TextContent) else f"({first.type} content)"


async def call_ok(client: Client, tool: str, arguments: Mapping[str, Any]) -> CallToolResult:
    """Call a tool; anything but a successful result stops the benchmark (a failed call is no timing)."""
    result = await client.call_tool(tool, dict(arguments))
    if result.is_error:
        raise BenchError(f"{tool} failed: {result_text(result)[:300]}")
    return result


async def open_inmemory(stack: AsyncExitStack, server: MCPServer) -> Client:
    """The SDK's in-process client (mode auto: direct dispatch, no JSON-RPC framing)."""
    return await stack.enter_async_context(Client(server))


async def open_stdio(stack: AsyncExitStack, run: Run, env: Mapping[str, str]) -> Client:
    """Our server spawned by the SDK's stdio client, as an MCP host would run it."""
    argv = run.ours_argv()
    params = StdioServerParameters(command=argv[0], args=argv[1:], env=dict(env))
    errlog = stack.enter_context(run.log_path("ours-stdio").open("w"))
    client = await stack.enter_async_context(Client(stdio_client(params, errlog=errlog)))
    await client.list_tools()
    return client


async def open_http(stack: AsyncExitStack, mcp_url: str, token: str) -> Client:
    """One HTTP caller with its own InfraBox token (sent as its bearer credential)."""
    http = await stack.enter_async_context(
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=60)
    )
    client = await stack.enter_async_context(Client(streamable_http_client(mcp_url, http_client=http)))
    await client.list_tools()
    return client


@dataclass
class RawInfraBox:
    """The same InfraBox requests our tools make, sent with plain httpx: the baseline."""

    http: httpx.AsyncClient

    @classmethod
    async def open(cls, stack: AsyncExitStack, api_url: str, token: str) -> RawInfraBox:
        http = await stack.enter_async_context(
            httpx.AsyncClient(
                base_url=api_url + "/",
                timeout=30,
                headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            )
        )
        return cls(http)

    async def _get(self, path: str) -> Any:
        response = await self.http.get(path, headers={"X-Request-ID": str(uuid.uuid4())})
        response.raise_for_status()
        return response.json()

    async def get_build(self, project_id: str, build_id: str) -> list[Any]:
        """get_build asks for the build and its jobs at once."""
        base = f"projects/{project_id}/builds/{build_id}"
        return list(await asyncio.gather(self._get(base), self._get(base + "/jobs")))

    async def restart_job(self, project_id: str, job_id: str) -> Any:
        response = await self.http.post(
            f"projects/{project_id}/jobs/{job_id}/restart", headers={"X-Request-ID": str(uuid.uuid4())}
        )
        response.raise_for_status()
        return response.json()


# --- our server over Streamable HTTP --------------------------------------------------------------------


@dataclass
class HttpServer:
    url: str
    proc: subprocess.Popen[bytes]
    log: Path
    path: str = "/mcp"

    @property
    def mcp_url(self) -> str:
        return self.url + self.path

    def pids(self) -> list[int]:
        """The server's process and its workers, if it has any."""
        return process_tree(self.proc.pid)

    def stop(self) -> None:
        stop_process(self.proc, grace_s=10.0)


def start_ours_http(
    run: Run, *, workers: int = 1, state_url: str | None = None, timeout_s: float = 30.0
) -> HttpServer:
    """`mcp-ci-tools --transport streamable-http` on a free loopback port, once `GET /healthz` answers 200
    (and, with several workers, once every worker says it is serving).

    Raises `Unavailable` while the transport is not there (no flag, the process exits, no health answer).
    """
    argv = run.ours_argv()
    env = run.ours_env(stdio=False)
    if state_url:
        env["MCP_CI_STATE_URL"] = state_url
    shown = command([*argv, "--help"], env=env, timeout_s=60).stdout
    if "--transport" not in shown:
        raise Unavailable("`mcp-ci-tools --help` shows no --transport flag yet")
    port = free_port()
    log = run.log_path("ours-http")
    flags = ["--transport", "streamable-http", "--host", "127.0.0.1", "--port", str(port)]
    if workers > 1:
        flags += ["--workers", str(workers)]
    proc = run.spawn(
        [*argv, *flags], env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr_path=log
    )
    server = HttpServer(url=f"http://127.0.0.1:{port}", proc=proc, log=log)
    _wait_answering(server, "`mcp-ci-tools --transport streamable-http`", timeout_s, health="/healthz")
    if workers > 1:
        deadline = time.monotonic() + timeout_s
        while sum("serving MCP over" in line for line in tail(log, 200).splitlines()) < workers:
            if time.monotonic() > deadline:
                server.stop()
                raise Unavailable(f"not all {workers} workers said they were serving: {tail(log, 2)[:300]}")
            time.sleep(0.05)
    return server


def start_floor_http(run: Run, *, timeout_s: float = 30.0) -> HttpServer:
    """The bare MCPServer floor over Streamable HTTP, as `MCPServer.run` serves it: its noop tool, and a
    get_build that sends the same two requests ours does to the run's sandbox with plain httpx."""
    port = free_port()
    log = run.log_path("floor-http")
    script = str(BENCH_DIR / "peers" / "floor_server.py")
    proc = run.spawn(
        [sys.executable, script, "--http", str(port), run.sandbox.api],
        env={**base_env(), "FLOOR_INFRABOX_TOKEN": run.sandbox.token},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr_path=log,
    )
    server = HttpServer(url=f"http://127.0.0.1:{port}", proc=proc, log=log)
    _wait_answering(server, "the floor over Streamable HTTP", timeout_s, health=None)
    return server


def _wait_answering(server: HttpServer, what: str, timeout_s: float, *, health: str | None) -> None:
    """Until `health` answers 200 (without one: until anything at all answers on the MCP path)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            last = tail(server.log, 1) or "(no output)"
            raise Unavailable(f"{what} exited with status {server.proc.returncode}: {last[:200]}")
        with contextlib.suppress(httpx.TransportError):
            if health is None:
                httpx.get(server.mcp_url, timeout=2)
                return
            if httpx.get(server.url + health, timeout=2).status_code == 200:
                return
        time.sleep(0.05)
    server.stop()
    raise Unavailable(f"{what} did not answer in {timeout_s:.0f} s")


async def timed_call(call: Callable[[], Any]) -> float:
    """Seconds one awaited call takes."""
    start = time.perf_counter()
    await call()
    return time.perf_counter() - start
