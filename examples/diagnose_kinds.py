"""Print diagnose_build's verdict for each seeded failure kind of the sandbox.

    .venv/bin/python examples/diagnose_kinds.py

Starts the sandbox on a free loopback port, runs `mcp-ci-tools` over stdio against it with the sandbox's
trigger token, and prints, per seeded build, each current failure's classification, the job history and
the flaky-suspect tests, as JSON.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any, TextIO

import anyio
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

from mcp_ci_tools.sandbox import SANDBOX_TOKENS, SEED, start_in_thread

CASES = {
    "infrastructure": (SEED.payments, SEED.infrastructure_build),
    "flaky_suspect": (SEED.payments, SEED.flaky_build),
    "deterministic_suspect": (SEED.payments, SEED.deterministic_build),
    "unknown": (SEED.infra, SEED.unknown_build),
    "recovered_on_retry": (SEED.payments, SEED.recovered_build),
}


def digest(content: dict[str, Any]) -> dict[str, Any]:
    """The parts of a diagnose_build result that carry the verdict."""
    return {
        "build": f"#{content['build']['build_number']} ({content['build']['branch']})",
        "state_counts": content["state_counts"],
        "all_attempts_state_counts": content["all_attempts_state_counts"],
        "problem_jobs": [
            {
                "job": p["job"]["name"],
                "state": p["job"]["state"],
                "failed_tests": [t["name"] for t in p["failed_tests"]],
                "classification": p["classification"],
            }
            for p in content["problem_jobs"]
        ],
        "job_history": content["job_history"],
        "flaky_suspect_tests": content["flaky_suspect_tests"],
        "summary": content["summary"],
        "left_out": content["left_out"],
    }


async def diagnose_all(url: str, home: Path, errlog: TextIO) -> dict[str, dict[str, Any]]:
    env = {
        "PATH": "",
        "HOME": str(home),
        "INFRABOX_URL": url,
        "INFRABOX_MCP_TOKEN": SANDBOX_TOKENS["read_only"].token,
        "MCP_CI_AUDIT_LOG": str(home / "audit.jsonl"),
    }
    params = StdioServerParameters(command=sys.executable, args=["-m", "mcp_ci_tools"], env=env)
    found: dict[str, dict[str, Any]] = {}
    async with Client(stdio_client(params, errlog=errlog)) as client:
        for case, (project_id, build_id) in CASES.items():
            result = await client.call_tool(
                "diagnose_build", {"project_id": project_id, "build_id": build_id}
            )
            found[case] = digest(result.structured_content or {})
    return found


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        with (
            open(home / "server.log", "w") as errlog,  # noqa: ASYNC230 - before the session, not during
            start_in_thread(home / "sandbox.sqlite3", job_duration_s=0, tick_interval_s=0.05) as sandbox,
        ):
            found = await diagnose_all(sandbox.url, home, errlog)
    print(json.dumps(found, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    anyio.run(main)
