"""`mcp-ci-tools` / `python -m mcp_ci_tools`: load settings, log to stderr, serve MCP over stdio."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence

from mcp_ci_tools.config import ConfigError, load_settings

__all__ = ["main"]

log = logging.getLogger("mcp_ci_tools")


def _configure_logging() -> None:
    # Before MCPServer exists: its own basicConfig then does nothing, and stdout stays the protocol's alone.
    logging.basicConfig(
        stream=sys.stderr,
        level=os.environ.get("MCP_CI_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        settings = load_settings(sys.argv[1:] if argv is None else argv, os.environ)
    except ConfigError as error:
        print(f"mcp-ci-tools: configuration error: {error}", file=sys.stderr)
        return 2
    _configure_logging()
    from mcp_ci_tools.server import build_server  # imported late: --help and config errors stay fast

    server = build_server(settings)
    log.info(
        "serving MCP over stdio for %s with token %s (trigger %s, audit log %s)",
        settings.infrabox_url,
        settings.token_fingerprint,
        "allowed" if settings.allow_trigger else "not allowed",
        settings.audit_log,
    )
    server.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
