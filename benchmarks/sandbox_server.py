"""The sandbox as the benchmarks run it: `python benchmarks/sandbox_server.py DB_PATH`.

The database is seeded by the caller. The scheduler does not run (no background work competes for the CPU
while we time; job duration 0) and the sandbox's per-user rate limits are replaced by a limiter that admits
everything, so thousands of calls fit in a run. Prints the port it listens on (127.0.0.1), then serves until
terminated. Nothing of the sandbox itself is changed.
"""

from __future__ import annotations

import dataclasses
import socket
import sys

import uvicorn

from mcp_ci_tools.sandbox import create_app


class AdmitAll:
    """Stands in for `sandbox.auth.RateLimiter`: every call is allowed."""

    def hit(self, user_id: str, bucket: str, now: float) -> int | None:
        return None


def main(db_path: str) -> None:
    app = create_app(db_path, job_duration_s=0.0, run_scheduler=False, seed=False)
    app.state.sandbox = dataclasses.replace(app.state.sandbox, limiter=AdmitAll())
    # IPPROTO_TCP spelled out: asyncio sets TCP_NODELAY only on sockets whose proto says TCP; without it
    # every response (headers and body written separately) waits for a delayed ACK, 40 ms.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    print(sock.getsockname()[1], flush=True)
    config = uvicorn.Config(app, log_config=None, access_log=False, ws="none", log_level="warning")
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main(sys.argv[1])
