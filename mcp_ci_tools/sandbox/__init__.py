"""A local InfraBox stand-in: the `/api/v1/mcp` namespace on Starlette and SQLite, with a scheduler.

It is the server side of mcp-ci-tools' demo and tests and shares no code with the client.
"""

from mcp_ci_tools.sandbox.app import DEFAULT_DB_PATH, SandboxHandle, create_app, serve, start_in_thread
from mcp_ci_tools.sandbox.scheduler import Scheduler
from mcp_ci_tools.sandbox.seed import SANDBOX_TOKENS, SEED, SandboxToken, SeedIds, sandbox_token

__all__ = [
    "DEFAULT_DB_PATH",
    "SANDBOX_TOKENS",
    "SEED",
    "SandboxHandle",
    "SandboxToken",
    "Scheduler",
    "SeedIds",
    "create_app",
    "sandbox_token",
    "serve",
    "start_in_thread",
]
