"""A bad setting stops the real command at start: exit 2, one stderr line naming the variable, nothing served.

Each case runs `python -m mcp_ci_tools` as an operator would, with an HTTP transport on a free port, and
then checks that the port is not listening.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from mcp_ci_tools.config import load_settings
from tests.conftest import free_port

GOOD = {"INFRABOX_URL": "https://infrabox.example.com"}


@pytest.mark.parametrize(
    ("env", "variable", "says"),
    [
        ({"INFRABOX_URL": "http://host/api/v1/mcp"}, "INFRABOX_URL", "use http://host (the server calls"),
        (
            {"INFRABOX_URL": "https://ib.example.com/ci/api/v1/"},
            "INFRABOX_URL",
            "use https://ib.example.com/ci ",
        ),
        ({"INFRABOX_URL": "http://exa mple.com"}, "INFRABOX_URL", "must not contain spaces"),
        ({"INFRABOX_URL": "infrabox.example.com"}, "INFRABOX_URL", "absolute http(s) URL"),
        ({"INFRABOX_URL": "https://ib.example.com/?project=1"}, "INFRABOX_URL", "a query"),
        ({"INFRABOX_URL": "https://ib.example.com:80a"}, "INFRABOX_URL", "invalid port"),
        (
            {"MCP_CI_ALLOWED_ORIGINS": "https://chat.example.com/"},
            "MCP_CI_ALLOWED_ORIGINS",
            "no trailing slash",
        ),
        ({"MCP_CI_ALLOWED_ORIGINS": "chat.example.com"}, "MCP_CI_ALLOWED_ORIGINS", "scheme://host[:port]"),
        ({"MCP_CI_ALLOWED_ORIGINS": "https://chat.example.com/app"}, "MCP_CI_ALLOWED_ORIGINS", "no path"),
        ({"MCP_CI_ALLOWED_HOSTS": "name/"}, "MCP_CI_ALLOWED_HOSTS", "name, name:port or name:*"),
        ({"MCP_CI_ALLOWED_HOSTS": "https://ci-tools.example.com"}, "MCP_CI_ALLOWED_HOSTS", "no scheme"),
        ({"MCP_CI_TRANSPORT": "websocket"}, "MCP_CI_TRANSPORT", "unknown transport 'websocket'"),
    ],
)
def test_a_bad_setting_exits_2_with_one_line_naming_it_and_serves_nothing(
    env: dict[str, str], variable: str, says: str
) -> None:
    port = free_port()
    transport = [] if "MCP_CI_TRANSPORT" in env else ["--transport", "http"]
    completed = subprocess.run(
        [sys.executable, "-m", "mcp_ci_tools", *transport, "--port", str(port)],
        env={"PATH": os.environ.get("PATH", ""), **GOOD, **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )

    assert completed.returncode == 2
    assert completed.stdout == ""
    lines = completed.stderr.splitlines()
    assert len(lines) == 1, completed.stderr
    assert lines[0].startswith(f"mcp-ci-tools: configuration error: {variable}: ")
    assert says in lines[0]
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0  # nothing listens


@pytest.mark.parametrize(
    ("name", "value"),
    [
        (
            "MCP_CI_ALLOWED_ORIGINS",
            "http://127.0.0.1:*,https://chat.example.com,https://chat.example.com:8443",
        ),
        ("MCP_CI_ALLOWED_ORIGINS", "http://[::1]:3000"),
        (
            "MCP_CI_ALLOWED_HOSTS",
            "ci-tools.example.com,ci-tools.example.com:443,ci-tools:*,10.0.0.5,[::1]:8000",
        ),
        ("INFRABOX_URL", "https://infrabox.example.com/ci/"),
    ],
)
def test_good_values_still_start(name: str, value: str) -> None:
    settings = load_settings(["--transport", "http"], {**GOOD, name: value})

    assert settings.infrabox_url in ("https://infrabox.example.com", "https://infrabox.example.com/ci")


def test_a_port_in_use_is_exit_2_with_one_line_and_no_serving_claim(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        completed = subprocess.run(
            [sys.executable, "-m", "mcp_ci_tools", "--transport", "http", "--port", str(port)],
            env={"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), **GOOD},
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )

    errors = [line for line in completed.stderr.splitlines() if "configuration error" in line]
    assert completed.returncode == 2
    assert errors == [
        f"mcp-ci-tools: configuration error: MCP_CI_PORT: cannot listen on 127.0.0.1:{port}: Address already in use"
    ]
    assert "serving MCP" not in completed.stderr and "Traceback" not in completed.stderr


def test_port_0_logs_the_port_it_got_and_serves_there(tmp_path: Path) -> None:
    import re

    import httpx

    command = [sys.executable, "-m", "mcp_ci_tools", "--transport", "http", "--port", "0"]
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), **GOOD}
    with subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True) as server:
        assert server.stderr is not None
        try:
            line = ""
            while "serving MCP over http at" not in line:
                line = server.stderr.readline()
                assert line, "the server stopped before it said where it serves"
            found = re.search(r"at http://127\.0\.0\.1:(\d+) ", line)
            assert found is not None, line
            health = httpx.get(f"http://127.0.0.1:{found.group(1)}/healthz", timeout=10)
        finally:
            server.terminate()
            server.communicate(timeout=20)

    assert int(found.group(1)) != 0
    assert health.status_code == 200
