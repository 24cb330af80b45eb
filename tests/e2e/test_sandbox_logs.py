"""End to end against the sandbox: SDK client → `mcp-ci-tools` over stdio → the sandbox over HTTP. Log pages
reassemble the masked log byte for byte, a page edge inside a secret still masks it, and the resources,
prompts and completions work on real data."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.types import (
    PromptReference,
    ResourceLink,
    ResourceTemplateReference,
    TextContent,
    TextResourceContents,
)

from mcp_ci_tools.domain.masking import mask
from mcp_ci_tools.domain.terminal import terminal_safe
from mcp_ci_tools.sandbox import SANDBOX_TOKENS, SEED, SandboxHandle, start_in_thread
from tests.conftest import text_of

pytestmark = pytest.mark.anyio

TOKEN = SANDBOX_TOKENS["trigger"].token


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[SandboxHandle]:
    with start_in_thread(tmp_path / "sandbox.sqlite3", job_duration_s=0, tick_interval_s=0.05) as handle:
        yield handle


def _params(sandbox: SandboxHandle, tmp_path: Path) -> StdioServerParameters:
    env = {
        "PATH": "",
        "HOME": str(tmp_path),
        "INFRABOX_URL": sandbox.url,
        "INFRABOX_MCP_TOKEN": TOKEN,
        "MCP_CI_ALLOW_TRIGGER": "true",
        "MCP_CI_AUDIT_LOG": str(tmp_path / "audit.jsonl"),
    }
    return StdioServerParameters(command=sys.executable, args=["-m", "mcp_ci_tools"], env=env)


def _raw_log(sandbox: SandboxHandle, job_id: str) -> str:
    answer = httpx.get(
        f"{sandbox.url}/api/v1/mcp/projects/{SEED.payments}/jobs/{job_id}/log",
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    answer.raise_for_status()
    body = answer.json()
    return body if isinstance(body, str) else str(body["log"])


async def test_logs_resources_and_prompts_against_the_sandbox(sandbox: SandboxHandle, tmp_path: Path) -> None:
    raw = _raw_log(sandbox, SEED.failed_test_job)
    leaked = re.search(r"ib_mcp_([0-9a-f]{48})", raw)
    assert leaked is not None and "s3cr3t-Passw0rd" in raw  # the seeded log does leak secrets
    secrets = [leaked.group(1), "s3cr3t-Passw0rd"]
    args = {"project_id": SEED.payments, "job_id": SEED.failed_test_job}
    with open(tmp_path / "server.log", "w") as errlog:
        async with Client(stdio_client(_params(sandbox, tmp_path), errlog=errlog)) as client:

            async def call(tool: str, **arguments: Any) -> dict[str, Any]:
                result = await client.call_tool(tool, arguments)
                assert not result.is_error, text_of(result)
                content: dict[str, Any] = result.structured_content or {}
                return content

            pages = [await call("get_job_log", **args, byte_offset=0, max_bytes=1_000)]
            while pages[-1]["next_offset"] is not None:
                pages.append(
                    await call("get_job_log", **args, byte_offset=pages[-1]["next_offset"], max_bytes=1_000)
                )

            assert len(pages) >= 2
            assert "".join(p["text"] for p in pages) == mask(terminal_safe(raw))
            assert [p["byte_start"] for p in pages[1:]] == [p["byte_end"] for p in pages[:-1]]
            assert pages[-1]["byte_end"] == pages[0]["total_bytes"] == len(raw.encode())
            assert not any(secret in p["text"] for p in pages for secret in secrets)

            inside = raw.encode().index(secrets[0].encode()) + 10  # a page edge inside the token
            split = await call("get_job_log", **args, byte_offset=inside)
            assert split["byte_start"] < inside and secrets[0][10:30] not in split["text"]
            assert "[MASKED:" in split["text"] and "moved back" in split["note"]

            linked = await client.call_tool("get_job_log", args)
            [link] = [item for item in linked.content if isinstance(item, ResourceLink)]
            [console] = (await client.read_resource(str(link.uri))).contents
            assert isinstance(console, TextResourceContents)
            assert console.text.startswith("# Untrusted CI output")
            assert console.text.endswith(mask(terminal_safe(raw)))

            [summary] = (
                await client.read_resource(f"infrabox://projects/{SEED.payments}/builds/{SEED.failed_build}")
            ).contents
            assert isinstance(summary, TextResourceContents)
            assert f"infrabox://projects/{SEED.payments}/jobs/{SEED.failed_test_job}/console" in summary.text

            diagnosis = await call("diagnose_build", project_id=SEED.payments, build_id=SEED.failed_build)
            assert any(p["log_resource"] == str(link.uri) for p in diagnosis["problem_jobs"])

            projects = await client.complete(
                ResourceTemplateReference(uri="infrabox://projects/{project_id}/builds/{build_id}"),
                {"name": "project_id", "value": "payments"},
            )
            assert projects.completion.values == [SEED.payments]
            builds = await client.complete(
                PromptReference(name="triage_red_build"),
                {"name": "build_id", "value": ""},
                context_arguments={"project_id": SEED.payments},
            )
            assert SEED.failed_build in builds.completion.values

            tools = {t.name for t in (await client.list_tools()).tools}
            prompt = await client.get_prompt(
                "triage_red_build", {"project_id": SEED.payments, "build_id": SEED.failed_build}
            )
            [message] = prompt.messages
            assert isinstance(message.content, TextContent)
            assert set(re.findall(r"`([a-z_]+)`", message.content.text)) <= tools
