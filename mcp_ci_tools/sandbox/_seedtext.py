"""Console lines and test results of the seeded demo jobs. The secret-looking values are fake: they are there
so a client's log masking can be shown."""

from __future__ import annotations

import hashlib
from typing import Any, TypedDict

__all__ = [
    "FailedTest",
    "deploy_log",
    "docker_build_log",
    "e2e_log",
    "frontend_install_log",
    "frontend_lint_log",
    "pytest_log",
    "pytest_results",
    "terraform_log",
]

_FAKE_MCP_TOKEN = "ib_mcp_" + hashlib.sha256(b"mcp-ci-tools sandbox leaked example").hexdigest()[:48]
_FAKE_AWS_KEY_ID = "AKIA4SANDBOX7EXAMPLE"
_FAKE_AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYSANDBOXKEY"  # noqa: S105 - fake, for the masking demo


class FailedTest(TypedDict):
    """A failed test of a seeded job: its testrun row's name, duration (ms), message and stack."""

    name: str
    duration: int
    message: str
    stack: str


def docker_build_log(project: str, build_number: int, commit: str, subject: str) -> list[str]:
    return [
        "Cloning into '/infrabox/context'...",
        f"HEAD is now at {commit[:7]} {subject}",
        f"Building image registry.sandbox.local/{project}/build:build_{build_number}",
        "Step 1/8 : FROM python:3.12-slim",
        " ---> 4c8f1e2a9b7d",
        "Step 2/8 : WORKDIR /app",
        " ---> Using cache",
        "Step 3/8 : COPY requirements.txt requirements-dev.txt ./",
        "Step 4/8 : RUN pip install --no-cache-dir -r requirements-dev.txt",
        "Successfully installed fastapi-0.111.0 sqlalchemy-2.0.30 pydantic-2.7.1 stripe-9.6.0 pytest-8.2.0",
        "Step 5/8 : COPY . .",
        'Step 8/8 : CMD ["uvicorn", "payments.app:app", "--host", "0.0.0.0"]',
        "Successfully built 7d1e0c9b2f4a",
        f"Pushing registry.sandbox.local/{project}/build:build_{build_number}",
    ]


def pytest_log(failures: list[tuple[str, str, str]], passed: int, seconds: float) -> list[str]:
    """A pytest session; `failures` are (file, test, error line)."""
    lines = [
        "+ export DATABASE_URL=postgresql://payments:s3cr3t-Passw0rd@postgres:5432/payments_test",
        f"+ curl -sf -H 'Authorization: Bearer {_FAKE_MCP_TOKEN}' https://infrabox.sandbox.local/healthz",
        "+ pytest -q --junitxml=/infrabox/upload/testresult/pytest.xml",
        "============================= test session starts ==============================",
        "platform linux -- Python 3.12.3, pytest-8.2.0, pluggy-1.5.0",
        "rootdir: /app, configfile: pyproject.toml",
        f"collected {passed + len(failures)} items",
        "",
        "tests/test_api.py ........................................                [ 27%]",
        "tests/test_charges.py ....................................               [ 52%]",
        "tests/test_refunds.py " + "." * 12 + "F" * len(failures) + "." * 8 + "                [ 66%]",
        "tests/test_settlement.py ..................................................  [100%]",
    ]
    if failures:
        lines.append("=================================== FAILURES ===================================")
        for file, test, error in failures:
            lines += [f"_____ {test} _____", f"{file}: in {test}", f"E   {error}"]
        lines.append("=========================== short test summary info ============================")
        lines += [f"FAILED {file}::{test} - {error}" for file, test, error in failures]
        lines.append(f"======== {len(failures)} failed, {passed} passed in {seconds:.2f}s ========")
    else:
        lines.append(f"======== {passed} passed in {seconds:.2f}s ========")
    return lines


def pytest_results(failures: list[FailedTest], passed: list[str], suite: str) -> list[dict[str, Any]]:
    ok = [
        {"name": name, "suite": suite, "state": "ok", "duration": 40 + 7 * i} for i, name in enumerate(passed)
    ]
    return ok + [{"suite": suite, "state": "failure", **failure} for failure in failures]


def deploy_log(environment: str, build_number: int) -> list[str]:
    return [
        "+ aws sts get-caller-identity",
        f"+ export AWS_ACCESS_KEY_ID={_FAKE_AWS_KEY_ID}",
        f"+ export AWS_SECRET_ACCESS_KEY={_FAKE_AWS_SECRET}",
        f"+ helm upgrade --install payments charts/payments --namespace payments-{environment}"
        f" --set image.tag=build_{build_number} --wait --timeout 5m",
        'Release "payments" has been upgraded. Happy Helming!',
        f"NAMESPACE: payments-{environment}",
        "STATUS: deployed",
        "+ kubectl rollout status deployment/payments-api --timeout=300s",
        'deployment "payments-api" successfully rolled out',
    ]


def frontend_install_log() -> list[str]:
    return [
        "+ node --version",
        "v20.12.2",
        "+ npm ci --no-audit --no-fund",
        "added 1342 packages in 38s",
        "//registry.npmjs.org/:_authToken=npm_SANDBOXfakeTOKEN0123456789abcdefABCD",
    ]


def frontend_lint_log(errors: int = 0) -> list[str]:
    lines = ["+ npx eslint --max-warnings=0 src/", "+ npx tsc --noEmit"]
    if errors:
        lines += [
            "<--- Last few GCs --->",
            "[31:0x5d5e3a0]    88123 ms: Mark-Compact 2041.3 (2083.5) -> 2039.9 (2084.0) MB",
            "FATAL ERROR: Reached heap limit Allocation failed - JavaScript heap out of memory",
        ]
    return lines


def e2e_log() -> list[str]:
    return [
        "+ docker compose -f docker-compose.e2e.yml up --abort-on-container-exit --exit-code-from playwright",
        " Container web-frontend-api-1  Started",
        " Container web-frontend-web-1  Started",
        " Container web-frontend-playwright-1  Started",
        "playwright-1  | Running 212 tests using 4 workers",
        "playwright-1  |   ✓  1 [chromium] > login.spec.ts:12:5 > logs in with SSO (2.1s)",
        "playwright-1  |   ✓  2 [chromium] > theme.spec.ts:8:5 > toggles dark mode (1.4s)",
        "playwright-1  |   ✓  3 [chromium] > checkout.spec.ts:31:5 > pays with a saved card (3.8s)",
        "playwright-1  |   ✓  4 [firefox] > theme.spec.ts:8:5 > toggles dark mode (1.9s)",
        "playwright-1  |   212 passed (6.2m)",
    ]


def terraform_log(error: str | None = None) -> list[str]:
    lines = [
        "+ terraform init -input=false",
        "Terraform has been successfully initialized!",
        "+ terraform plan -input=false -out=tfplan",
        "module.vpc.aws_vpc.main: Refreshing state... [id=vpc-0a1b2c3d4e5f60718]",
    ]
    if error:
        return [
            *lines,
            "│ Error: " + error,
            '│   on peering.tf line 14, in resource "aws_vpc_peering_connection"',
        ]
    return [*lines, "Plan: 0 to add, 2 to change, 0 to destroy."]
