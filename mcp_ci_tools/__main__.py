"""`mcp-ci-tools` / `python -m mcp_ci_tools`.

mcp-ci-tools [flags]            MCP over stdio against INFRABOX_URL
mcp-ci-tools --sandbox [flags]  MCP over stdio against a sandbox started in this process
mcp-ci-tools sandbox [...]      serve the InfraBox sandbox on loopback
mcp-ci-tools demo               play a scripted agent session against the sandbox
"""

from __future__ import annotations

import gc
import logging
import os
import sys
import tempfile
from collections.abc import Sequence

from mcp_ci_tools.config import ConfigError, Settings, load_settings

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


def _embedded_sandbox(environ: dict[str, str]) -> dict[str, str]:
    """Start a fresh sandbox on a free loopback port; return the environment that points at it."""
    from mcp_ci_tools.sandbox import SANDBOX_TOKENS, start_in_thread

    state = tempfile.mkdtemp(prefix="mcp-ci-tools-sandbox-")
    handle = start_in_thread(os.path.join(state, "sandbox.sqlite3"), job_duration_s=2.0)
    log.info("sandbox InfraBox at %s (data in %s)", handle.url, state)
    for token in SANDBOX_TOKENS.values():
        log.info("sandbox token %-15s %s  %s", token.role, token.token, token.description)
    return {
        **environ,
        "INFRABOX_URL": handle.url,
        "INFRABOX_MCP_TOKEN": SANDBOX_TOKENS["trigger"].token,
        "MCP_CI_ALLOW_TRIGGER": "true",
        "MCP_CI_AUDIT_LOG": environ.get("MCP_CI_AUDIT_LOG") or os.path.join(state, "audit.jsonl"),
    }


def _serve_http(settings: Settings) -> int:
    from mcp_ci_tools.domain.masking import mask
    from mcp_ci_tools.http_app import build_http_app, serve_http
    from mcp_ci_tools.inflight import InFlight
    from mcp_ci_tools.server import build_server
    from mcp_ci_tools.state import open_state

    inflight = InFlight()
    state = open_state(settings.state_url, prefix=settings.state_prefix, timeout=settings.state_timeout)
    server = build_server(settings, inflight=inflight, state=state)
    app = build_http_app(server, settings, readiness=state.ready)
    _start_up_done()
    if settings.state_url:
        log.info("budgets, learned permissions and guards are shared through %s", mask(settings.state_url))
    paths = {"streamable-http": "/mcp", "sse": "/sse", "http": "/mcp and /sse"}[settings.transport]
    log.info(
        "serving MCP over %s at http://%s:%d (%s) for %s; callers authenticate with their own token "
        "(trigger %s, audit log %s)",
        settings.transport,
        settings.host,
        settings.port,
        paths,
        settings.infrabox_url,
        "decided by InfraBox per token" if settings.allow_trigger else "off for everyone",
        settings.audit_log,
    )
    serve_http(app, settings, inflight=inflight)
    log.info("stopped; audit log %s is complete", settings.audit_log)
    return 0


def _start_up_done() -> None:
    # Start-up only creates long-lived objects (models, schemas, tools): collecting them would be wasted work.
    gc.freeze()
    gc.enable()


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["sandbox"]:
        from mcp_ci_tools.sandbox.__main__ import main as sandbox_main

        sandbox_main(args[1:])
        return 0
    if args[:1] == ["demo"]:
        from mcp_ci_tools.demo import main as demo_main

        return demo_main(args[1:])
    gc.disable()  # until start-up is done: see _start_up_done
    try:
        return _serve(args)
    finally:
        gc.enable()  # on every way out, a configuration error or --help included


def _serve(args: list[str]) -> int:
    environ = dict(os.environ)
    if "--sandbox" in args:
        args.remove("--sandbox")
        _configure_logging()
        environ = _embedded_sandbox(environ)
    try:
        settings = load_settings(args, environ)
    except ConfigError as error:
        print(f"mcp-ci-tools: configuration error: {error}", file=sys.stderr)
        return 2
    _configure_logging()
    from mcp_ci_tools.server import build_server, repair_audit_log  # late: --help and config errors stay fast

    repair_audit_log(settings.audit_log)
    if settings.transport != "stdio":
        return _serve_http(settings)
    server = build_server(settings)
    _start_up_done()
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
