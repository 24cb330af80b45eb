"""`python -m mcp_ci_tools.sandbox`: serve the sandbox on loopback and list its tokens (on stderr)."""

from __future__ import annotations

import argparse
import sys

from mcp_ci_tools.sandbox.app import DEFAULT_DB_PATH, serve
from mcp_ci_tools.sandbox.seed import SANDBOX_TOKENS

__all__ = ["main"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="mcp-ci-tools sandbox", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8123)
    parser.add_argument("--db", default=DEFAULT_DB_PATH, help="SQLite file (created and seeded if new)")
    parser.add_argument("--job-duration", type=float, default=2.0, help="seconds a job runs")
    args = parser.parse_args(argv)
    print(f"InfraBox sandbox: http://{args.host}:{args.port} (database {args.db})", file=sys.stderr)
    for token in SANDBOX_TOKENS.values():
        print(f"  {token.role:<15} {token.token}  {token.description}", file=sys.stderr)
    print(
        "Point mcp-ci-tools at it:\n"
        f"  INFRABOX_URL=http://{args.host}:{args.port} "
        f"INFRABOX_MCP_TOKEN={SANDBOX_TOKENS['trigger'].token} MCP_CI_ALLOW_TRIGGER=true mcp-ci-tools",
        file=sys.stderr,
    )
    serve(host=args.host, port=args.port, db_path=args.db, job_duration_s=args.job_duration)


if __name__ == "__main__":
    main()
