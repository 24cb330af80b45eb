"""The demo CI the sandbox is seeded with: users, projects, builds and how each job ends.

Projects (alice, bob and carol collaborate on the first two; infra-terraform is bob's, carol's and dave's):
  payments-service  #41 main green · #42 feature/refund-api failed (test failed → deploy skipped)
                    #43 release/2.4 unstable (failed tests) · #44 main running (test running, deploy queued)
  web-frontend      #16 renovate/eslint-9 error · #17 main green · #18 feature/dark-mode running (e2e)
                    and one build per failure kind diagnose_build tells apart (older, so #44 stays newest):
                    #36 feature/ledger-export failed, its restart (same commit) green: flaky_suspect
                    #37, #38 feature/fx-rates: the same test fails on both: deterministic_suspect
                    #39 feature/batch-import: test killed, exit code 137: infrastructure
                    #40 feature/idempotency: test failed, test.1 passed, deploy skipped → deploy.1 ran:
                    recovered on retry
  infra-terraform   #7 main green · #8 feature/vpc-peering failed (nothing to compare with: unknown)
Failing tests pass when their job is restarted or rerun (they are flaky), so a restart really turns green.
Every id is fixed (see `SeedIds`), so a demo script can name them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from mcp_ci_tools.sandbox import _seedtext

__all__ = ["BUILDS", "MEMBERS", "PROJECTS", "SEED", "USERS", "SeedBuild", "SeedIds", "SeedJob", "uid"]


def uid(kind: str, n: int) -> str:
    return f"{kind}-0000-4000-8000-{n:012d}"


@dataclass(frozen=True)
class SeedIds:
    """Ids of the seeded objects meant for each demo step."""

    payments: str = uid("a1000000", 1)
    frontend: str = uid("a1000000", 2)
    infra: str = uid("a1000000", 3)
    green_build: str = uid("b1000000", 41)  # payments #41, main, finished
    failed_build: str = uid("b1000000", 42)  # payments #42: restart_build, restart_job(test)
    failed_test_job: str = uid("c1000000", 4203)  # failure; restart → test.1 + deploy.1
    failed_build_job: str = uid("c1000000", 4202)  # finished; its dependents are terminal
    skipped_deploy_job: str = uid("c1000000", 4204)  # skipped: cannot be rerun
    failed_seed_job: str = uid("c1000000", 4201)  # Create Jobs: its type cannot be restarted
    unstable_build: str = uid("b1000000", 43)  # payments #43
    unstable_test_job: str = uid("c1000000", 4303)  # unstable with failed tests: rerun → test.1
    running_build: str = uid("b1000000", 44)  # payments #44: abort_build
    running_test_job: str = uid("c1000000", 4403)  # running: cannot be restarted
    queued_deploy_job: str = uid("c1000000", 4404)
    frontend_running_build: str = uid("b1000000", 1018)  # web-frontend #18
    frontend_e2e_job: str = uid("c1000000", 101804)  # running: abort_job
    infra_failed_build: str = uid("b1000000", 2008)  # infra-terraform #8
    # One build per failure kind of diagnose_build, and a failure that recovered on retry.
    flaky_build: str = uid("b1000000", 36)  # payments #36: test failed; its restart passed
    flaky_rebuild: str = uid("b1000000", 3601)  # payments #36 restart 1 (same commit): green
    deterministic_previous_build: str = uid("b1000000", 37)  # payments #37: test_fx_rate… failed
    deterministic_build: str = uid("b1000000", 38)  # payments #38: the same test failed again
    infrastructure_build: str = uid("b1000000", 39)  # payments #39: test killed (exit code 137)
    recovered_build: str = uid("b1000000", 40)  # payments #40: test failed, test.1 passed
    recovered_failed_job: str = uid("c1000000", 4003)  # test (restarted): failure
    recovered_retry_job: str = uid("c1000000", 4013)  # test.1: finished
    unknown_build: str = uid("b1000000", 2008)  # the same build as infra_failed_build


SEED = SeedIds()

USERS = {  # username → (id, name)
    "alice": (uid("e1000000", 1), "Alice Schmidt"),
    "bob": (uid("e1000000", 2), "Bob Jensen"),
    "carol": (uid("e1000000", 3), "Carol Nguyen"),
    "dave": (uid("e1000000", 4), "Dave Okafor"),
}
MEMBERS = {
    SEED.payments: ("alice", "bob", "carol"),
    SEED.frontend: ("alice", "bob", "carol"),
    SEED.infra: ("bob", "carol", "dave"),
}

PROJECTS = (  # id, name, type, public
    (SEED.payments, "payments-service", "github", False),
    (SEED.frontend, "web-frontend", "github", True),
    (SEED.infra, "infra-terraform", "gerrit", False),
)


@dataclass(frozen=True)
class SeedJob:
    """A seeded job: its number within the build (for its fixed id), state, definition and parents."""

    n: int
    name: str
    state: str
    definition: dict[str, Any]
    needs: tuple[tuple[str, tuple[str, ...]], ...] = ()
    type: str = "run_project_container"
    took: float = 60.0
    restarted: bool = False  # restart_job or rerun_job cloned it (its clone is in the same build)
    clone: bool = False  # a `name.N` clone: not in the seed job's matrix


def _flaky(definition: dict[str, Any], passing: dict[str, Any]) -> dict[str, Any]:
    return {**definition, "retry": {"outcome": "finished", "message": None, **passing}}


def _payments_jobs(
    number: int, commit: str, subject: str, *, test: dict[str, Any], states: str
) -> list[SeedJob]:
    build_state, test_state, deploy_state = states.split()
    return [
        SeedJob(
            2,
            "build",
            build_state,
            {"log": _seedtext.docker_build_log("payments-service", number, commit, subject)},
            took=95,
        ),
        SeedJob(3, "test", test_state, test, (("build", ("finished",)),), took=180),
        SeedJob(
            4,
            "deploy",
            deploy_state,
            {"log": _seedtext.deploy_log("staging", number)},
            (("test", ("finished",)),),
            took=70,
        ),
    ]


_PASSED = ["test_create_charge", "test_refund_full_amount", "test_capture_after_auth", "test_list_payouts"]
_GREEN_TESTS = {
    "log": _seedtext.pytest_log([], 148, 39.82),
    "testruns": _seedtext.pytest_results([], _PASSED, "tests.test_payments"),
    "stats": {"cpu": [12.5, 88.0, 93.4, 71.2, 20.3], "mem": [180, 512, 640, 655, 410]},
}
_REFUND_FAILURES: list[_seedtext.FailedTest] = [
    {
        "name": "test_partial_refund_rounds_half_even",
        "duration": 31,
        "message": "AssertionError: assert Decimal('33.33') == Decimal('33.34')",
        "stack": "tests/test_refunds.py:88: in test_partial_refund_rounds_half_even\n"
        '    assert refund.amount == Decimal("33.34")\n'
        "E   AssertionError: assert Decimal('33.33') == Decimal('33.34')\n"
        "E    +  where Decimal('33.33') = <Refund id=rf_19 charge=ch_77 amount=33.33>.amount",
    },
    {
        "name": "test_refund_webhook_signature",
        "duration": 5012,
        "message": "requests.exceptions.ConnectionError: HTTPConnectionPool(host='stripe-mock', port=12111)",
        "stack": "payments/webhooks.py:41: in deliver\n"
        "    response = self.session.post(url, data=payload, headers=headers, timeout=5)\n"
        "venv/lib/python3.12/site-packages/requests/adapters.py:519: in send\n"
        "    raise ConnectionError(e, request=request)\n"
        "E   requests.exceptions.ConnectionError: HTTPConnectionPool(host='stripe-mock', port=12111): "
        "Max retries exceeded with url: /v1/webhook_endpoints (Caused by NewConnectionError: "
        "[Errno 111] Connection refused)",
    },
]
_FAILING_TESTS = _flaky(
    {
        "outcome": "failure",
        "message": "Container exited with code 1",
        "log": _seedtext.pytest_log(
            [("tests/test_refunds.py", f["name"], f["message"]) for f in _REFUND_FAILURES], 146, 41.37
        ),
        "testruns": _seedtext.pytest_results(_REFUND_FAILURES, _PASSED, "tests.test_refunds"),
    },
    _GREEN_TESTS,
)
_SETTLEMENT_FAILURE: _seedtext.FailedTest = {
    "name": "test_settlement_batch_closes_at_midnight_utc",
    "duration": 212,
    "message": "AssertionError: batch closed at 01:00 UTC, expected 00:00 UTC",
    "stack": "tests/test_settlement.py:57: in test_settlement_batch_closes_at_midnight_utc\n"
    "    assert batch.closed_at == datetime(2024, 3, 31, 0, 0, tzinfo=UTC)\n"
    "payments/settlement.py:112: in close\n"
    "    self.closed_at = local_midnight(self.merchant.timezone).astimezone(UTC)\n"
    "E   AssertionError: batch closed at 01:00 UTC, expected 00:00 UTC",
}
_UNSTABLE_TESTS = _flaky(
    {
        "outcome": "unstable",
        "log": _seedtext.pytest_log(
            [("tests/test_settlement.py", _SETTLEMENT_FAILURE["name"], _SETTLEMENT_FAILURE["message"])],
            147,
            40.11,
        ),
        "testruns": _seedtext.pytest_results([_SETTLEMENT_FAILURE], _PASSED, "tests.test_settlement"),
    },
    _GREEN_TESTS,
)


def _frontend_jobs(
    e2e_state: str, publish_state: str, lint: dict[str, Any], lint_state: str
) -> list[SeedJob]:
    return [
        SeedJob(2, "install", "finished", {"log": _seedtext.frontend_install_log()}, took=45),
        SeedJob(3, "lint", lint_state, lint, (("install", ("finished",)),), took=50),
        SeedJob(
            4,
            "e2e",
            e2e_state,
            {"log": _seedtext.e2e_log()},
            (("install", ("finished",)),),
            type="run_docker_compose",
            took=380,
        ),
        SeedJob(
            5,
            "publish",
            publish_state,
            {"log": ["+ npm publish --tag next", "+ @sandbox/web-frontend@3.8.0"]},
            (("lint", ("finished",)), ("e2e", ("finished",))),
            took=20,
        ),
    ]


_LINT_OK: dict[str, Any] = {"log": _seedtext.frontend_lint_log()}
_LINT_OOM = _flaky(
    {
        "outcome": "error",
        "message": "OOMKilled: container exceeded its 2Gi memory limit",
        "log": _seedtext.frontend_lint_log(errors=1),
    },
    _LINT_OK,
)


def _terraform_jobs(plan: dict[str, Any], plan_state: str, apply_state: str) -> list[SeedJob]:
    return [
        SeedJob(2, "plan", plan_state, plan, took=75),
        SeedJob(
            3,
            "apply",
            apply_state,
            {
                "log": [
                    "+ terraform apply -input=false tfplan",
                    "Apply complete! Resources: 0 added, 2 changed.",
                ]
            },
            (("plan", ("finished",)),),
        ),
    ]


_PLAN_FAILED = {
    "outcome": "failure",
    "message": "terraform plan failed",
    "log": _seedtext.terraform_log("creating EC2 VPC Peering Connection: InvalidVpcID.NotFound"),
}


def _commit(project_id: str, number: int) -> str:
    return hashlib.sha1(f"{project_id} {number}".encode(), usedforsecurity=False).hexdigest()


@dataclass(frozen=True)
class SeedBuild:
    """A seeded build; `age_s` is how long before the seeding it was created."""

    project_id: str
    build_id: str
    number: int
    branch: str
    age_s: float
    jobs: list[SeedJob]
    restart_counter: int = 0

    @property
    def commit(self) -> str:
        return _commit(self.project_id, self.number)


def _payments(
    build_id: str, number: int, branch: str, age_s: float, subject: str, *, test: dict[str, Any], states: str
) -> SeedBuild:
    jobs = _payments_jobs(number, _commit(SEED.payments, number), subject, test=test, states=states)
    return SeedBuild(SEED.payments, build_id, number, branch, age_s, jobs)


def _pytest_job(
    n: int, name: str, state: str, failed: list[_seedtext.FailedTest], suite: str, **extra: Any
) -> SeedJob:
    log = _seedtext.pytest_log(
        [(suite.replace(".", "/") + ".py", f["name"], f["message"]) for f in failed], 146, 40.2
    )
    passed = _PASSED + extra.pop("passing", [])
    definition = {"outcome": state, "log": log, "testruns": _seedtext.pytest_results(failed, passed, suite)}
    if failed and state == "failure":
        definition["message"] = "Container exited with code 1"
    needs = (("build", ("finished",)),) if "needs" not in extra else extra.pop("needs")
    return SeedJob(n, name, state, definition, needs, took=180, **extra)


def _kind_build(
    build_id: str,
    number: int,
    branch: str,
    age_s: float,
    tests: list[SeedJob],
    deploys: list[tuple[int, str, str, str, bool, bool]],
    restart_counter: int = 0,
) -> SeedBuild:
    commit = _commit(SEED.payments, number)
    jobs = [
        SeedJob(
            2,
            "build",
            "finished",
            {"log": _seedtext.docker_build_log("payments-service", number, commit, branch)},
            took=95,
        ),
        *tests,
    ]
    for n, name, state, parent, restarted, clone in deploys:
        jobs.append(
            SeedJob(
                n,
                name,
                state,
                {"log": _seedtext.deploy_log("staging", number)},
                ((parent, ("finished",)),),
                took=70,
                restarted=restarted,
                clone=clone,
            )
        )
    return SeedBuild(SEED.payments, build_id, number, branch, age_s, jobs, restart_counter)


_LEDGER_FAILURE: _seedtext.FailedTest = {
    "name": "test_ledger_export_streams_rows_in_order",
    "duration": 1840,
    "message": "AssertionError: row 1022 before row 1021 (worker pool finished out of order)",
    "stack": "tests/test_ledger.py:64: in test_ledger_export_streams_rows_in_order\n"
    "    assert [r.seq for r in rows] == sorted(r.seq for r in rows)\n"
    "E   AssertionError: row 1022 before row 1021 (worker pool finished out of order)",
}
_FX_FAILURE: _seedtext.FailedTest = {
    "name": "test_fx_rate_rounds_to_four_places",
    "duration": 12,
    "message": "AssertionError: assert Decimal('1.08345') == Decimal('1.0835')",
    "stack": "tests/test_fx.py:23: in test_fx_rate_rounds_to_four_places\n"
    '    assert rate("EUR", "USD") == Decimal("1.0835")\n'
    "E   AssertionError: assert Decimal('1.08345') == Decimal('1.0835')",
}
_IDEMPOTENCY_FAILURE: _seedtext.FailedTest = {
    "name": "test_idempotency_key_reuse_returns_first_charge",
    "duration": 5003,
    "message": "TimeoutError: redis lock not acquired within 5 s",
    "stack": "payments/idempotency.py:30: in acquire\n"
    '    raise TimeoutError("redis lock not acquired within 5 s")\n'
    "E   TimeoutError: redis lock not acquired within 5 s",
}
_KILLED_TESTS = {
    "outcome": "error",
    "message": "Container exited with code 137 (OOMKilled)",
    "log": [
        "+ pytest -q tests/test_import.py",
        "============================= test session starts ==============================",
        "collected 58 items",
        "tests/test_import.py ..................                                  [ 31%]",
        "/bin/sh: line 1:    57 Killed                  pytest -q tests/test_import.py",
        "Container exited with code 137",
    ],
}

_KIND_BUILDS = [
    _kind_build(
        SEED.flaky_build,
        36,
        "feature/ledger-export",
        30000,
        [_pytest_job(3, "test", "failure", [_LEDGER_FAILURE], "tests.test_ledger")],
        [(4, "deploy", "skipped", "test", False, False)],
    ),
    _kind_build(
        SEED.flaky_rebuild,
        36,
        "feature/ledger-export",
        29000,
        [_pytest_job(3, "test", "finished", [], "tests.test_ledger", passing=[_LEDGER_FAILURE["name"]])],
        [(4, "deploy", "finished", "test", False, False)],
        restart_counter=1,
    ),
    _kind_build(
        SEED.deterministic_previous_build,
        37,
        "feature/fx-rates",
        28000,
        [_pytest_job(3, "test", "failure", [_FX_FAILURE], "tests.test_fx")],
        [(4, "deploy", "skipped", "test", False, False)],
    ),
    _kind_build(
        SEED.deterministic_build,
        38,
        "feature/fx-rates",
        26000,
        [_pytest_job(3, "test", "failure", [_FX_FAILURE], "tests.test_fx")],
        [(4, "deploy", "skipped", "test", False, False)],
    ),
    _kind_build(
        SEED.infrastructure_build,
        39,
        "feature/batch-import",
        24000,
        [SeedJob(3, "test", "error", _KILLED_TESTS, (("build", ("finished",)),), took=240)],
        [(4, "deploy", "skipped", "test", False, False)],
    ),
    _kind_build(
        SEED.recovered_build,
        40,
        "feature/idempotency",
        22000,
        [
            _pytest_job(
                3, "test", "failure", [_IDEMPOTENCY_FAILURE], "tests.test_idempotency", restarted=True
            ),
            _pytest_job(
                13,
                "test.1",
                "finished",
                [],
                "tests.test_idempotency",
                clone=True,
                passing=[_IDEMPOTENCY_FAILURE["name"]],
            ),
        ],
        [(4, "deploy", "skipped", "test", True, False), (14, "deploy.1", "finished", "test.1", False, True)],
    ),
]

BUILDS = [
    _payments(SEED.green_build, 41, "main", 10800, "Bump stripe to 9.6.0", test=_GREEN_TESTS,
              states="finished finished finished"),
    _payments(SEED.failed_build, 42, "feature/refund-api", 7200, "Add partial refunds to the refund API",
              test=_FAILING_TESTS, states="finished failure skipped"),
    _payments(SEED.unstable_build, 43, "release/2.4", 3600, "Release 2.4.0", test=_UNSTABLE_TESTS,
              states="finished unstable skipped"),
    _payments(SEED.running_build, 44, "main", 420, "Merge feature/refund-api", test=_GREEN_TESTS,
              states="finished running queued"),
    SeedBuild(SEED.frontend, uid("b1000000", 1016), 16, "renovate/eslint-9", 14400,
           _frontend_jobs("finished", "skipped", _LINT_OOM, "error")),
    SeedBuild(SEED.frontend, uid("b1000000", 1017), 17, "main", 9000,
           _frontend_jobs("finished", "finished", _LINT_OK, "finished")),
    SeedBuild(SEED.frontend, SEED.frontend_running_build, 18, "feature/dark-mode", 600,
           _frontend_jobs("running", "queued", _LINT_OK, "finished")),
    SeedBuild(SEED.infra, uid("b1000000", 2007), 7, "main", 86400,
           _terraform_jobs({"log": _seedtext.terraform_log()}, "finished", "finished")),
    SeedBuild(SEED.infra, SEED.infra_failed_build, 8, "feature/vpc-peering", 5400,
           _terraform_jobs(_PLAN_FAILED, "failure", "skipped")),
    *_KIND_BUILDS,
]  # fmt: skip
