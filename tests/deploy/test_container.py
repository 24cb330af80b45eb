"""The container image as shipped: its Dockerfile's run conditions reproduced without docker.

The image runs its command as a system user without a home, with the environment the Dockerfile sets. Here
the same command runs as such a user (created like the Dockerfile does) against the sandbox, and a trigger
call must be accepted and audited, `/healthz` and `/readyz` must answer, and the image's HEALTHCHECK command
must pass. The pinned requirements must satisfy pyproject.toml's dependencies.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shlex
import shutil
import socket
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult
from packaging.requirements import Requirement

from mcp_ci_tools.sandbox import SANDBOX_TOKENS, SEED, SandboxHandle, start_in_thread
from tests.processes import wait_until_answering

ROOT = Path(__file__).parent.parent.parent
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
TEST_USER = "mcp-ci-test"  # a system user like the image's, without a home


def instructions() -> list[tuple[str, str]]:
    """The Dockerfile's instructions as (KEYWORD, arguments), continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    found = []
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            keyword, _, rest = line.strip().partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


def env_of_image() -> dict[str, str]:
    env: dict[str, str] = {}
    for keyword, rest in instructions():
        if keyword == "ENV":
            for item in shlex.split(rest):
                name, _, value = item.partition("=")
                env[name] = value
    return env


def exec_form(keyword: str) -> list[str]:
    """The exec-form command of CMD, or of HEALTHCHECK (what follows its options and `CMD`)."""
    rest = next(rest for kw, rest in instructions() if kw == keyword)
    if keyword == "HEALTHCHECK":
        rest = rest[rest.index("CMD ") + 4 :].strip()
    command = json.loads(rest)
    assert isinstance(command, list) and all(isinstance(part, str) for part in command)
    return command


def test_the_image_sets_a_writable_audit_location_for_its_user_and_a_healthcheck() -> None:
    found = instructions()
    user = next(rest for keyword, rest in found if keyword == "USER")
    audit = Path(env_of_image()["MCP_CI_AUDIT_LOG"])
    runs = " ".join(rest for keyword, rest in found if keyword == "RUN")

    assert user != "root"
    assert f"install -d -o {user} -m 0700 {audit.parent}" in runs  # the user owns the audit directory
    assert f"--no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin {user}" in runs
    assert ("VOLUME", str(audit.parent)) in found
    assert "/healthz" in " ".join(exec_form("HEALTHCHECK"))
    assert "--require-hashes" in runs


def test_the_pinned_requirements_satisfy_the_declared_dependencies() -> None:
    import tomllib

    declared = [
        Requirement(spec)
        for spec in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    ]
    pinned = dict(
        re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", (ROOT / "deploy" / "requirements.txt").read_text(), re.M)
    )
    pins = {name.lower().replace("_", "-"): version for name, version in pinned.items()}

    for requirement in declared:
        name = requirement.name.lower().replace("_", "-")
        assert name in pins, f"{name} is not pinned in deploy/requirements.txt: regenerate it"
        assert requirement.specifier.contains(pins[name]), (
            f"{name}=={pins[name]} does not satisfy {requirement}"
        )


# --- the run conditions ---------------------------------------------------------------------------------


def _interpreter_for(user: pwd.struct_passwd, env: dict[str, str]) -> str | None:
    """An interpreter `user` can run with this checkout's packages, or None (a checkout under /root, say)."""
    candidates = [sys.executable, shutil.which("python3") or "", f"/usr/bin/python3.{sys.version_info.minor}"]
    for candidate in dict.fromkeys(c for c in candidates if c):
        try:
            probe = subprocess.run(
                [candidate, "-c", "import sys, mcp_ci_tools, pydantic_core; print(sys.version_info[:2])"],
                env=env,
                user=user.pw_uid,
                group=user.pw_gid,
                extra_groups=[],
                capture_output=True,
                text=True,
                check=False,
            )
        except OSError:  # not executable by that user
            continue
        if probe.returncode == 0 and probe.stdout.strip() == str(tuple(sys.version_info[:2])):
            return candidate
    return None


@pytest.fixture
def image_user() -> pwd.struct_passwd:
    if os.geteuid() != 0 or shutil.which("useradd") is None:
        pytest.skip("needs root and useradd to run as the image's kind of user")
    try:
        return pwd.getpwnam(TEST_USER)
    except KeyError:
        subprocess.run(
            [
                "useradd",
                "--system",
                "--no-create-home",
                "--home-dir",
                "/nonexistent",
                "--shell",
                "/usr/sbin/nologin",
                TEST_USER,
            ],
            check=True,
        )
        return pwd.getpwnam(TEST_USER)


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[SandboxHandle]:
    with start_in_thread(tmp_path / "sandbox.sqlite3", job_duration_s=0, tick_interval_s=0.05) as handle:
        yield handle


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_a_trigger_call_is_accepted_under_the_images_run_conditions(
    image_user: pwd.struct_passwd, sandbox: SandboxHandle
) -> None:
    image_env = env_of_image()
    audit_dir = Path(tempfile.mkdtemp(prefix="mcp-ci-image-audit-"))  # stands in for the image's volume
    os.chown(audit_dir, image_user.pw_uid, image_user.pw_gid)
    audit_dir.chmod(0o700)
    audit_file = audit_dir / Path(image_env["MCP_CI_AUDIT_LOG"]).name
    packages = os.pathsep.join([str(ROOT), sysconfig.get_paths()["purelib"]])
    env = {
        **image_env,
        "MCP_CI_AUDIT_LOG": str(audit_file),
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": image_user.pw_dir,  # /nonexistent, as docker sets it from the user's entry
        "PYTHONPATH": packages,  # where the image has them installed
        "INFRABOX_URL": sandbox.url,
        "MCP_CI_ALLOW_TRIGGER": "true",
    }
    assert not Path(image_user.pw_dir).exists()
    python = _interpreter_for(image_user, env)
    if python is None:
        pytest.skip(f"no interpreter with this checkout's packages is readable by {TEST_USER}")
    port = _free_port()
    command = exec_form("CMD")
    assert command[0] == "mcp-ci-tools" and command[command.index("--port") + 1] == "8000"
    command = [python, "-m", "mcp_ci_tools", *command[1:]]
    command[command.index("--port") + 1] = str(port)
    server = subprocess.Popen(
        command,
        env=env,
        user=image_user.pw_uid,
        group=image_user.pw_gid,
        extra_groups=[],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_answering(base + "/healthz", server)
        ready = httpx.get(base + "/readyz")
        healthcheck = exec_form("HEALTHCHECK")
        healthcheck = [
            python if part == "python" else part.replace(":8000", f":{port}") for part in healthcheck
        ]
        probe = subprocess.run(
            healthcheck,
            env=env,
            user=image_user.pw_uid,
            group=image_user.pw_gid,
            extra_groups=[],
            check=False,
        )
        rerun = anyio.run(_rerun_a_job, base)
    finally:
        server.terminate()
        _, err = server.communicate(timeout=15)

    assert ready.status_code == 200
    assert probe.returncode == 0
    assert rerun.is_error is False, rerun.content
    assert rerun.structured_content is not None and rerun.structured_content["new_job_id"]
    records = [json.loads(line) for line in audit_file.read_text().splitlines()]
    assert [(r["event"], r["tool"], r["decision"]) for r in records] == [
        ("attempt", "rerun_job", "allowed"),
        ("result", "rerun_job", "allowed"),
    ]
    assert audit_file.stat().st_uid == image_user.pw_uid
    assert "audit log not writable" not in err and "Traceback" not in err
    assert server.returncode == 0
    shutil.rmtree(audit_dir)


async def _rerun_a_job(base: str) -> CallToolResult:
    headers = {"Authorization": f"Bearer {SANDBOX_TOKENS['trigger'].token}"}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=30) as http,
        Client(streamable_http_client(base + "/mcp", http_client=http)) as client,
    ):
        return await client.call_tool(
            "rerun_job", {"project_id": SEED.payments, "job_id": SEED.unstable_test_job}
        )
