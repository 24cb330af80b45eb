"""The sandbox as a product: its tokens and seeded ids for the demo, serving from a thread on loopback,
the `python -m` entry point, stdout left alone, and no code shared with the client."""

from __future__ import annotations

import ast
import hashlib
import re
import socket
import uuid
from dataclasses import fields
from pathlib import Path

import httpx
import pytest

import mcp_ci_tools.sandbox as sandbox_package
from mcp_ci_tools.sandbox import SANDBOX_TOKENS, SEED, start_in_thread
from mcp_ci_tools.sandbox import __main__ as sandbox_main

from .conftest import FakeClock, Sandbox, bearer, open_sandbox

P = f"/projects/{SEED.payments}"
SANDBOX_DIR = Path(sandbox_package.__file__).parent


def test_the_sandbox_tokens_are_deterministic_and_well_formed() -> None:
    assert {"trigger", "read_only", "single_project"} <= set(SANDBOX_TOKENS)
    for role, token in SANDBOX_TOKENS.items():
        expected = "ib_mcp_" + hashlib.sha256(f"mcp-ci-tools sandbox {role}".encode()).hexdigest()[:48]
        assert token.role == role
        assert token.token == expected
        assert re.fullmatch(r"ib_mcp_[0-9a-f]{48}", token.token)
        assert token.description and "\n" not in token.description


def test_each_sandbox_token_does_what_its_description_says(sandbox: Sandbox) -> None:
    restart = f"{P}/jobs/{SEED.failed_test_job}/restart"

    assert sandbox.post(restart, role="read_only").status_code == 403
    assert sandbox.get(f"/projects/{SEED.frontend}", role="single_project").status_code == 403
    assert sandbox.post(restart, role="single_project").status_code == 200
    assert sandbox.get("/projects", role="expired").status_code == 401
    assert sandbox.get("/projects", role="revoked").status_code == 401
    assert [p["name"] for p in sandbox.get("/projects", role="read_only").json()] == [
        "infra-terraform",
        "payments-service",
        "web-frontend",
    ]


def test_the_seeded_ids_are_canonical_uuids() -> None:
    for field in fields(SEED):
        value = getattr(SEED, field.name)
        assert str(uuid.UUID(value)) == value, field.name


def test_the_seeded_ids_point_at_what_each_demo_step_needs(sandbox: Sandbox) -> None:
    def job(project: str, job_id: str) -> tuple[str, str]:
        body = sandbox.get(f"/projects/{project}/jobs/{job_id}", role="read_only").json()
        return body["name"], body["state"]

    assert job(SEED.payments, SEED.failed_test_job) == ("test", "failure")
    assert job(SEED.payments, SEED.failed_build_job) == ("build", "finished")
    assert job(SEED.payments, SEED.skipped_deploy_job) == ("deploy", "skipped")
    assert job(SEED.payments, SEED.failed_seed_job) == ("Create Jobs", "finished")
    assert job(SEED.payments, SEED.unstable_test_job) == ("test", "unstable")
    assert job(SEED.payments, SEED.running_test_job) == ("test", "running")
    assert job(SEED.payments, SEED.queued_deploy_job) == ("deploy", "queued")
    assert job(SEED.frontend, SEED.frontend_e2e_job) == ("e2e", "running")
    builds = {
        build["id"]: build["status"]
        for project in (SEED.payments, SEED.frontend, SEED.infra)
        for build in sandbox.get(f"/projects/{project}/builds", role="read_only").json()
    }
    assert builds[SEED.green_build] == "finished"
    assert builds[SEED.failed_build] == "failure"
    assert builds[SEED.unstable_build] == "unstable"
    assert builds[SEED.running_build] == "running"
    assert builds[SEED.frontend_running_build] == "running"
    assert builds[SEED.infra_failed_build] == "failure"


def test_a_database_that_already_has_data_is_not_seeded_again(tmp_path: Path, fake_clock: FakeClock) -> None:
    for first in open_sandbox(tmp_path, fake_clock):
        first.post(f"{P}/builds/{SEED.failed_build}/restart")
    for second in open_sandbox(tmp_path, fake_clock):
        counts = second.rows(
            "SELECT COUNT(*) AS builds, (SELECT COUNT(*) FROM mcp_token) AS tokens FROM build"
        )

    assert counts == [{"builds": 16, "tokens": 5}]  # 15 seeded, 1 restart


def test_without_seed_the_database_only_has_the_schema(tmp_path: Path, fake_clock: FakeClock) -> None:
    for empty in open_sandbox(tmp_path, fake_clock, seed=False):
        response = empty.get("/projects")
        tables = {row["name"] for row in empty.rows("SELECT name FROM sqlite_master WHERE type = 'table'")}

        assert response.json() == {"message": "invalid or unknown MCP token", "status": 401}
        assert {"project", "build", "job", "abort", "testrun", "mcp_token", "mcp_access_log"} <= tables


def test_start_in_thread_serves_on_a_free_loopback_port_until_stopped(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    handle = start_in_thread(tmp_path / "threaded.sqlite3", job_duration_s=0)
    try:
        response = httpx.get(handle.api_url + "/projects", headers=bearer(SANDBOX_TOKENS["trigger"].token))
    finally:
        handle.stop()

    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", handle.url)
    assert not handle.url.endswith(":0")
    assert [project["name"] for project in response.json()] == ["payments-service", "web-frontend"]
    with pytest.raises(httpx.ConnectError):
        httpx.get(handle.api_url + "/projects")
    assert capfd.readouterr().out == ""


def test_the_module_entry_point_lists_the_tokens_on_stderr_only(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    served: list[dict[str, object]] = []

    def serve(**kwargs: object) -> None:
        sock = kwargs.pop("sock")
        assert isinstance(sock, socket.socket)
        served.append({**kwargs, "listening_on": sock.getsockname()[1]})

    monkeypatch.setattr(sandbox_main, "serve", serve)

    status = sandbox_main.main(["--port", "0", "--db", "demo.sqlite3", "--job-duration", "0.5"])

    out, err = capsys.readouterr()
    port = served[0]["listening_on"]
    assert status == 0 and out == ""
    assert isinstance(port, int) and port > 0
    assert served == [
        {
            "host": "127.0.0.1",
            "port": port,
            "db_path": "demo.sqlite3",
            "job_duration_s": 0.5,
            "listening_on": port,
        }
    ]
    assert all(token.token in err for token in SANDBOX_TOKENS.values())
    assert f"InfraBox sandbox: http://127.0.0.1:{port} " in err  # the port it got, not 0
    stdio_line, http_line = (
        line for line in err.splitlines() if line.startswith(f"  INFRABOX_URL=http://127.0.0.1:{port}")
    )
    assert f"INFRABOX_MCP_TOKEN={SANDBOX_TOKENS['trigger'].token}" in stdio_line
    assert "INFRABOX_MCP_TOKEN" not in http_line and "--transport http" in http_line
    assert "Authorization: Bearer" in err


def test_a_port_in_use_is_one_line_and_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sandbox_main, "serve", lambda **kwargs: pytest.fail("served on a port in use"))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()

        status = sandbox_main.main(["--port", str(taken.getsockname()[1])])

    err = capsys.readouterr().err
    assert status == 2
    assert err.count("\n") == 1 and "cannot listen on 127.0.0.1:" in err and "in use" in err


@pytest.mark.parametrize("module", sorted(SANDBOX_DIR.glob("*.py")), ids=lambda path: path.name)
def test_each_sandbox_module_imports_nothing_of_the_client_side_and_declares_all(module: Path) -> None:
    tree = ast.parse(module.read_text())
    imported = [node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    imported += [
        alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
    ]

    project = [name for name in imported if name.split(".")[0] == "mcp_ci_tools"]
    assert all(name.startswith("mcp_ci_tools.sandbox") for name in project), project
    assert any(
        isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets)
        for node in tree.body
    )


def test_the_package_exports_the_public_api_other_modules_call() -> None:
    assert all(hasattr(sandbox_package, name) for name in sandbox_package.__all__)
    assert {"create_app", "serve", "start_in_thread", "SANDBOX_TOKENS", "Scheduler"} <= set(
        sandbox_package.__all__
    )
