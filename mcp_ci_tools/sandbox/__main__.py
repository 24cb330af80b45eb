"""`python -m mcp_ci_tools.sandbox`: serve the sandbox on loopback and list its tokens (on stderr)."""

from __future__ import annotations

import argparse
import sys

from mcp_ci_tools.sandbox.app import DEFAULT_DB_PATH, bind, serve
from mcp_ci_tools.sandbox.seed import SANDBOX_TOKENS

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Serve until interrupted (0), or 2 with one line on stderr if the address cannot be bound."""
    parser = argparse.ArgumentParser(
        prog="mcp-ci-tools sandbox",
        description=__doc__,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1", help="bind address")
    parser.add_argument("--port", type=int, default=8123, help="TCP port (0: any free port)")
    parser.add_argument("--db", default=DEFAULT_DB_PATH, help="SQLite file (created and seeded if new)")
    parser.add_argument("--job-duration", type=float, default=2.0, help="seconds a job runs")
    args = parser.parse_args(argv)
    try:
        sock = bind(args.host, args.port)
    except OSError as error:
        print(
            f"mcp-ci-tools sandbox: cannot listen on {args.host}:{args.port}: {error.strerror}",
            file=sys.stderr,
        )
        return 2
    with sock:
        port = sock.getsockname()[1]
        url = f"http://{args.host}:{port}"
        print(f"InfraBox sandbox: {url} (database {args.db})", file=sys.stderr)
        for token in SANDBOX_TOKENS.values():
            print(f"  {token.role:<15} {token.token}  {token.description}", file=sys.stderr)
        print(
            "Point mcp-ci-tools at it, over stdio:\n"
            f"  INFRABOX_URL={url} INFRABOX_MCP_TOKEN={SANDBOX_TOKENS['trigger'].token} "
            "MCP_CI_ALLOW_TRIGGER=true mcp-ci-tools\n"
            "or over HTTP (/mcp and /sse), each caller sending 'Authorization: Bearer <a token above>':\n"
            f"  INFRABOX_URL={url} MCP_CI_ALLOW_TRIGGER=true mcp-ci-tools --transport http --port 8000",
            file=sys.stderr,
        )
        serve(host=args.host, port=port, db_path=args.db, job_duration_s=args.job_duration, sock=sock)
    return 0


if __name__ == "__main__":
    sys.exit(main())
