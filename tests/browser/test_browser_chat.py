"""The browser example (`examples/browser-chat`) in Debian's headless Chromium, against the real CLI.

The page is served from one loopback origin, `mcp-ci-tools --transport http` (a subprocess, pointed at the
sandbox) listens on another, so every request is cross-origin and goes through CORS as it would for a user.
Playwright drives the page; the assertions are what the user sees on it, and the browser console must stay
free of errors. Runs for both TypeScript SDK versions, both transports and, where the SDK can, both eras.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, Request, expect, sync_playwright

from mcp_ci_tools.sandbox import SANDBOX_TOKENS, SEED, SandboxHandle, start_in_thread
from mcp_ci_tools.sandbox.auth import BUCKET_LIMITS
from tests.conftest import free_port
from tests.processes import wait_until_answering

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "browser-chat"
CHROMIUM = os.environ.get("MCP_CI_CHROMIUM", "/usr/bin/chromium")
# As the machine notes say: no background traffic (the network is closed), a fresh profile, no GPU.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ALICE = SANDBOX_TOKENS["trigger"].token
SDK_LABELS = {"v1": "@modelcontextprotocol/sdk 1.32.2", "v2": "@modelcontextprotocol/client 2.4.0"}
# diagnose_build's summary of payments #42, in the parts a reader needs (the wording around them may change).
RED_BUILD_SUMMARY = re.compile(
    r"^Build #42 on feature/refund-api is failure: .*'test' is failure: .*2 failed test"
)
VIA = {"streamable-http": "Streamable HTTP", "sse": "SSE"}
# What tools/list answers, in the server's order (trigger tools are listed; MCP_CI_ALLOW_TRIGGER refuses them).
TOOLS = [
    "diagnose_build",
    "list_projects",
    "list_builds",
    "get_build",
    "get_job",
    "get_job_log",
    "get_test_results",
    "wait_for_build",
    "restart_build",
    "abort_build",
    "restart_job",
    "rerun_job",
    "abort_job",
    "whoami",
]


def _missing(what: str, how: str) -> None:
    """A missing tool fails under CI (.ci/run installs it) and skips elsewhere, as for redis-server."""
    if os.environ.get("CI"):
        pytest.fail(f"{what} is missing ({how}; .ci/run installs it)")
    pytest.skip(f"{what} is missing: {how}")


@pytest.fixture(scope="module")
def bundle() -> Path:
    """The example, bundled from its current source (esbuild takes well under a second)."""
    if shutil.which("node") is None:
        _missing("node", "install Node.js 20 or newer")
    if not (EXAMPLE / "node_modules" / ".bin" / "esbuild").exists():
        _missing("examples/browser-chat/node_modules", "run `npm ci` in examples/browser-chat")
    built = subprocess.run(["node", "build.mjs"], cwd=EXAMPLE, capture_output=True, text=True, timeout=120)
    assert built.returncode == 0, built.stderr
    return EXAMPLE


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        _missing(CHROMIUM, "apt-get install chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def static_site(directory: Path, host: str) -> Iterator[str]:
    """`directory` over HTTP on `host` and a free port, from a thread; yields the origin."""

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((host, 0), functools.partial(Quiet, directory=str(directory)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


@pytest.fixture(scope="module")
def page_origin(bundle: Path) -> Iterator[str]:
    with static_site(bundle, "127.0.0.1") as origin:
        yield origin


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxHandle]:
    db = tmp_path_factory.mktemp("browser-sandbox") / "sandbox.sqlite3"
    # Every test of this module reads as the same caller within a minute, and diagnose_build reads other
    # builds of the commit for its verdict: not a test of InfraBox's limits, so the sandbox allows plenty.
    plenty = {bucket: 1000 for bucket in BUCKET_LIMITS}
    with start_in_thread(db, job_duration_s=0, tick_interval_s=0.05, rate_limits=plenty) as handle:
        yield handle


@contextmanager
def cli_server(sandbox: SandboxHandle, tmp_path: Path, transport: str, *flags: str) -> Iterator[str]:
    """`python -m mcp_ci_tools --transport <transport>` on a free loopback port; yields its base URL."""
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", ""),  # no INFRABOX_MCP_TOKEN: every caller brings their own
        "MCP_CI_AUDIT_LOG": str(tmp_path / f"audit-{transport}.jsonl"),
    }
    command = [sys.executable, "-m", "mcp_ci_tools", "--transport", transport]
    command += ["--infrabox-url", sandbox.url, "--port", str(port), *flags]
    # One caller (the sandbox's alice) makes every test's reads within a minute: not a budget test.
    command += ["--read-per-minute", "1000", "--log-per-minute", "1000"]
    log_path = tmp_path / f"server-{transport}.log"  # one server per temporary directory
    with open(log_path, "w") as log, subprocess.Popen(command, env=env, stderr=log) as process:
        try:
            base = f"http://127.0.0.1:{port}"
            wait_until_answering(base + "/readyz", process, timeout_s=30, log=log_path)
            yield base
        finally:
            process.terminate()
            process.wait(20)


@pytest.fixture(scope="module")
def server(sandbox: SandboxHandle, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Both transports from one process, as `--transport http` serves them."""
    with cli_server(sandbox, tmp_path_factory.mktemp("browser-http"), "http") as base:
        yield base


@pytest.fixture(scope="module")
def sse_only_server(sandbox: SandboxHandle, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An older deployment: SSE only, `/mcp` is not served."""
    with cli_server(sandbox, tmp_path_factory.mktemp("browser-sse"), "sse") as base:
        yield base


@pytest.fixture(scope="module")
def other_origin(bundle: Path) -> Iterator[str]:
    """The page on an origin that is not in the default allow-list (only 127.0.0.1, localhost, [::1] are)."""
    with static_site(bundle, "127.0.0.2") as origin:
        yield origin


@pytest.fixture(scope="module")
def server_allowing(
    sandbox: SandboxHandle, tmp_path_factory: pytest.TempPathFactory, other_origin: str
) -> Iterator[str]:
    """A server configured for a page off loopback, as the example's README says: `--allowed-origin`."""
    tmp_path = tmp_path_factory.mktemp("browser-allowing")
    with cli_server(sandbox, tmp_path, "http", "--allowed-origin", other_origin) as base:
        yield base


@dataclass
class Console:
    """What the page wrote to the browser console, and the exceptions it did not catch."""

    errors: list[str] = field(default_factory=list)

    def record(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(message.text)

    def cors_errors(self) -> list[str]:
        return [e for e in self.errors if "CORS" in e or "Access-Control" in e]


@dataclass(frozen=True)
class Sent:
    """One request the page sent to the MCP server, as the browser put it on the wire."""

    method: str
    path: str
    headers: dict[str, str]
    rpc: str | None  # the JSON-RPC method of a POST


@dataclass
class Wire:
    """Every request the page sent to `server`: the evidence of which transport and era really ran."""

    server: str
    sent: list[Sent] = field(default_factory=list)

    def record(self, request: Request) -> None:
        if request.url.startswith(self.server + "/"):
            body = request.post_data
            rpc = json.loads(body).get("method") if body else None
            path = request.url.removeprefix(self.server).split("?")[0]
            self.sent.append(Sent(request.method, path, request.headers, rpc))

    def rpc_methods(self) -> list[str]:
        return [s.rpc for s in self.sent if s.rpc is not None]


@contextmanager
def open_page(browser: Browser, url: str, server: str = "") -> Iterator[tuple[Page, Console, Wire]]:
    context = browser.new_context()
    try:
        page = context.new_page()
        console = Console()
        wire = Wire(server)
        page.on("console", console.record)
        page.on("pageerror", lambda error: console.errors.append(f"uncaught: {error}"))
        page.on("request", wire.record)
        page.goto(url)
        yield page, console, wire
    finally:
        context.close()


def expect_on_the_wire(wire: Wire, transport: str, era: str) -> None:
    """The transport's endpoints, the era's handshake and headers, and the caller's token on every request."""
    paths = {s.path for s in wire.sent}
    assert paths == ({"/mcp"} if transport == "streamable-http" else {"/sse", "/messages/"}), paths
    assert all(s.headers.get("authorization") == f"Bearer {ALICE}" for s in wire.sent), (
        "a request lacks the token"
    )
    methods = wire.rpc_methods()
    assert methods[-1] == "tools/call" and methods.count("tools/call") >= 4, (
        methods
    )  # projects, builds, diagnose
    if era == "2025-11-25":
        assert methods[:2] == ["initialize", "notifications/initialized"], methods
        after_handshake = wire.sent[1:]
        if transport == "streamable-http":
            assert all("mcp-session-id" in s.headers for s in after_handshake), "a request lacks the session"
    else:
        assert methods[0] == "server/discover" and "initialize" not in methods, methods
        assert not any("mcp-session-id" in s.headers for s in wire.sent), "a stateless request has a session"
        if transport == "streamable-http":
            assert all(s.headers.get("mcp-protocol-version") == era for s in wire.sent)
            calls = [s for s in wire.sent if s.rpc == "tools/call"]
            assert calls[-1].headers.get("mcp-name") == "diagnose_build"


def connect(page: Page, server: str, sdk: str, transport: str, era: str, token: str = ALICE) -> None:
    page.fill("#server-url", server)
    page.fill("#token", token)
    page.select_option("#sdk", sdk)
    page.select_option("#transport", transport)
    page.select_option("#era", era)
    page.click("#connect")


def expect_connected(page: Page, server: str, sdk: str, via: str, era: str) -> None:
    expected = f"Connected to {server} via {VIA[via]}, protocol {era}, {SDK_LABELS[sdk]}."
    expect(page.locator("#status")).to_have_text(expected, timeout=20_000)
    expect(page.locator("#tools li code")).to_have_text(TOOLS)


def diagnose_the_red_build(page: Page) -> None:
    expect(page.locator("#project option")).to_have_text(["payments-service", "web-frontend"])
    page.select_option("#project", SEED.payments)
    expect(page.locator("#diagnose")).to_be_enabled()  # the builds of the project chosen are shown
    build = page.locator(f"#build option[value='{SEED.failed_build}']")
    expect(build).to_have_text("#42 feature/refund-api (failure)")
    page.select_option("#build", SEED.failed_build)
    page.click("#diagnose")
    summary = page.locator("#summary")
    expect(summary).not_to_have_text(re.compile(r"^(Diagnosing…)?$"), timeout=20_000)
    expect(summary).to_have_text(RED_BUILD_SUMMARY)
    expect(page.locator("#problem-jobs li")).to_have_text(["test: failure, 2 failed tests"])
    expect(page.locator("#result")).to_contain_text(SEED.failed_build)


CASES = [
    pytest.param("v1", "streamable-http", "2025-11-25", id="sdk-v1-streamable-http-2025-11-25"),
    pytest.param("v1", "sse", "2025-11-25", id="sdk-v1-sse-2025-11-25"),
    pytest.param("v2", "streamable-http", "2025-11-25", id="sdk-v2-streamable-http-2025-11-25"),
    pytest.param("v2", "streamable-http", "2026-07-28", id="sdk-v2-streamable-http-2026-07-28"),
    pytest.param("v2", "sse", "2025-11-25", id="sdk-v2-sse-2025-11-25"),
    pytest.param("v2", "sse", "2026-07-28", id="sdk-v2-sse-2026-07-28"),
]


@pytest.mark.parametrize(("sdk", "transport", "era"), CASES)
def test_the_page_lists_the_tools_and_diagnoses_a_red_build(
    browser: Browser, page_origin: str, server: str, sdk: str, transport: str, era: str
) -> None:
    with open_page(browser, page_origin + "/index.html", server) as (page, console, wire):
        connect(page, server, sdk, transport, era)

        expect_connected(page, server, sdk, transport, era)
        diagnose_the_red_build(page)
        assert console.errors == []
        expect_on_the_wire(wire, transport, era)


@pytest.mark.parametrize("sdk", ["v1", "v2"])
def test_the_page_falls_back_to_sse_for_a_server_without_streamable_http(
    browser: Browser, page_origin: str, sse_only_server: str, sdk: str
) -> None:
    with open_page(browser, page_origin + "/index.html", sse_only_server) as (page, console, wire):
        connect(page, sse_only_server, sdk, "auto", "2025-11-25")

        expect_connected(page, sse_only_server, sdk, "sse", "2025-11-25")
        diagnose_the_red_build(page)
        # The failed POST /mcp is the browser's own network error line; nothing else, and no CORS error.
        assert console.cors_errors() == []
        assert all(re.search(r"status of 40[45]", e) for e in console.errors), console.errors
        assert wire.sent[0].path == "/mcp" and wire.sent[1].path == "/sse", wire.sent[:2]


def test_sdk_v1_says_it_cannot_speak_the_stateless_era(
    browser: Browser, page_origin: str, server: str
) -> None:
    with open_page(browser, page_origin + "/index.html", server) as (page, console, wire):
        connect(page, server, "v1", "streamable-http", "2026-07-28")

        expect(page.locator("#status")).to_have_text(
            "@modelcontextprotocol/sdk 1.32.2 cannot speak protocol 2026-07-28."
        )
        assert console.errors == []
        assert wire.sent == []


def test_a_bad_token_is_refused_with_a_401_the_page_can_read(
    browser: Browser, page_origin: str, server: str
) -> None:
    with open_page(browser, page_origin + "/index.html", server) as (page, console, wire):
        connect(page, server, "v2", "streamable-http", "2025-11-25", token="ib_mcp_not-a-token")

        # The error body is readable only because the 401 carries CORS headers too.
        expect(page.locator("#status")).to_contain_text("Could not connect: Streamable HTTP:", timeout=20_000)
        expect(page.locator("#status")).to_contain_text('"error": "invalid_token"')
        expect(page.locator("#tools-section")).to_be_hidden()
        assert console.cors_errors() == []
        assert console.errors == [
            "Failed to load resource: the server responded with a status of 401 (Unauthorized)"
        ]
        assert [s.path for s in wire.sent] == ["/mcp"]


def test_a_page_on_an_origin_not_allowed_gets_a_cors_error(
    browser: Browser, other_origin: str, server: str
) -> None:
    """The control for the console checks above: without --allowed-origin the browser blocks the answer."""
    with open_page(browser, other_origin + "/index.html", server) as (page, console, _):
        connect(page, server, "v2", "streamable-http", "2025-11-25")

        expect(page.locator("#status")).to_contain_text("Could not connect", timeout=20_000)
        expect(page.locator("#tools-section")).to_be_hidden()
        assert console.cors_errors() != [], console.errors


@pytest.mark.parametrize("transport", ["streamable-http", "sse"])
def test_allowed_origin_lets_a_page_off_loopback_in(
    browser: Browser, other_origin: str, server_allowing: str, transport: str
) -> None:
    with open_page(browser, other_origin + "/index.html", server_allowing) as (page, console, wire):
        connect(page, server_allowing, "v2", transport, "2026-07-28")

        expect_connected(page, server_allowing, "v2", transport, "2026-07-28")
        diagnose_the_red_build(page)
        assert console.errors == []
        expect_on_the_wire(wire, transport, "2026-07-28")
