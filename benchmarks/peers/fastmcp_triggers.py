"""FastMCP 4 version of our five trigger tools, written the obvious way (no budget, no audit, no retries).

Run as a script (stdio). Reads INFRABOX_URL and INFRABOX_MCP_TOKEN from the environment.
"""

from __future__ import annotations

import os
from typing import Any

import httpx
from fastmcp import FastMCP

API = os.environ["INFRABOX_URL"].rstrip("/") + "/api/v1/mcp"
HEADERS = {"Authorization": f"Bearer {os.environ['INFRABOX_MCP_TOKEN']}"}

mcp = FastMCP("infrabox-triggers")


async def _call(method: str, path: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=API, headers=HEADERS, timeout=30) as client:
        response = await client.request(method, path)
        response.raise_for_status()
        body: dict[str, Any] = response.json()  # every one of these endpoints answers a JSON object
        return body


@mcp.tool
async def restart_build(project_id: str, build_id: str) -> dict[str, Any]:
    """Restart an InfraBox build: a new build with the same number runs all jobs again."""
    return await _call("POST", f"/projects/{project_id}/builds/{build_id}/restart")


@mcp.tool
async def abort_build(project_id: str, build_id: str) -> dict[str, Any]:
    """Abort every active job of an InfraBox build."""
    return await _call("DELETE", f"/projects/{project_id}/builds/{build_id}/abort")


@mcp.tool
async def restart_job(project_id: str, job_id: str) -> dict[str, Any]:
    """Restart an InfraBox job and its downstream jobs."""
    return await _call("POST", f"/projects/{project_id}/jobs/{job_id}/restart")


@mcp.tool
async def rerun_job(project_id: str, job_id: str) -> dict[str, Any]:
    """Rerun only this InfraBox job."""
    return await _call("POST", f"/projects/{project_id}/jobs/{job_id}/rerun")


@mcp.tool
async def abort_job(project_id: str, job_id: str) -> dict[str, Any]:
    """Abort one InfraBox job."""
    return await _call("DELETE", f"/projects/{project_id}/jobs/{job_id}/abort")


if __name__ == "__main__":
    mcp.run()
