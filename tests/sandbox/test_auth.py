"""Who may call what: 401 for any bad token, 403 for scope, membership and trigger permission, the order
of the checks, per-user rate limits with 429 + Retry-After, and the mcp_access_log rows of each request."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import httpx
import pytest

from mcp_ci_tools.sandbox import SANDBOX_TOKENS, SEED

from .conftest import Sandbox, bearer

P = f"/projects/{SEED.payments}"
TRIGGER = SANDBOX_TOKENS["trigger"].token
FORBIDDEN_PROJECT = {"message": "access to this project is not permitted for the current MCP token"}
FORBIDDEN_TRIGGER = {"message": "this MCP token does not have trigger permission"}
RATE_LIMITED = {"message": "rate limit exceeded, please slow down", "status": 429}
UNKNOWN = "ib_mcp_" + hashlib.sha256(b"nobody").hexdigest()[:48]


def log_rows(sandbox: Sandbox) -> list[tuple[str, str, int | None]]:
    rows = sandbox.rows("SELECT endpoint, status, http_status FROM mcp_access_log ORDER BY id")
    return [(row["endpoint"], row["status"], row["http_status"]) for row in rows]


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "Unauthorized"),
        ({"Authorization": ""}, "Unauthorized"),
        ({"Authorization": f"bearer {TRIGGER}"}, "Unauthorized"),
        ({"Authorization": f"BEARER {TRIGGER}"}, "Unauthorized"),
        ({"Authorization": f"Token {TRIGGER}"}, "Unauthorized"),
        ({"Authorization": TRIGGER}, "Unauthorized"),
        ({"Authorization": f"Bearer  {TRIGGER}"}, "invalid MCP token format"),
        ({"Authorization": f"Bearer {TRIGGER} "}, "invalid MCP token format"),
        ({"Authorization": f"Bearer {TRIGGER.upper()}"}, "invalid MCP token format"),
        ({"Authorization": f"Bearer {TRIGGER[:-1]}"}, "invalid MCP token format"),
        ({"Authorization": f"Bearer {TRIGGER}0"}, "invalid MCP token format"),
        ({"Authorization": "Bearer glpat-example-not-an-infrabox-token"}, "invalid MCP token format"),
        ({"Authorization": f"Bearer {UNKNOWN}"}, "invalid or unknown MCP token"),
        (bearer(SANDBOX_TOKENS["revoked"].token), "MCP token has been revoked"),
        (bearer(SANDBOX_TOKENS["expired"].token), "MCP token has expired"),
    ],
    ids=[
        "missing",
        "empty",
        "lowercase-scheme",
        "uppercase-scheme",
        "other-scheme",
        "no-scheme",
        "two-spaces",
        "trailing-space",
        "uppercase-hex",
        "too-short",
        "too-long",
        "other-token-kind",
        "unknown",
        "revoked",
        "expired",
    ],
)
def test_every_bad_token_form_answers_401_and_changes_nothing(
    sandbox: Sandbox, headers: dict[str, str], message: str
) -> None:
    read = sandbox.get("/projects", headers=headers)
    write = sandbox.delete(f"{P}/builds/{SEED.running_build}/abort", headers=headers)

    assert (read.status_code, write.status_code) == (401, 401)
    assert read.json() == write.json() == {"message": message, "status": 401}
    assert sandbox.rows("SELECT * FROM abort") == []


def test_two_authorization_headers_answer_401(sandbox: Sandbox) -> None:
    headers = httpx.Headers([("Authorization", f"Bearer {TRIGGER}"), ("Authorization", f"Bearer {TRIGGER}")])

    response = sandbox.get("/projects", headers=headers)

    assert response.status_code == 401


def test_a_token_stops_working_the_moment_it_expires(sandbox: Sandbox) -> None:
    token = sandbox.add_token(expires_at=sandbox.clock() + 10)

    before = sandbox.get("/projects", token=token)
    sandbox.clock.advance(10)
    after = sandbox.get("/projects", token=token)

    assert before.status_code == 200
    assert after.json() == {"message": "MCP token has expired", "status": 401}


def test_only_the_hash_of_a_token_is_stored(sandbox: Sandbox) -> None:
    rows = sandbox.rows("SELECT * FROM mcp_token")

    stored = " ".join(str(value) for row in rows for value in row.values())
    assert all(token.token not in stored for token in SANDBOX_TOKENS.values())
    assert hashlib.sha256(TRIGGER.encode()).hexdigest() in stored


def test_a_project_outside_the_tokens_scope_answers_403(sandbox: Sandbox) -> None:
    response = sandbox.get(f"/projects/{SEED.frontend}/builds", role="single_project")

    assert response.status_code == 403
    assert response.json() == FORBIDDEN_PROJECT


def test_a_project_whose_scope_entry_has_expired_answers_403(sandbox: Sandbox) -> None:
    until = datetime.fromtimestamp(sandbox.clock() + 5, UTC).isoformat()
    token = sandbox.add_token(enabled_projects={SEED.payments: until})

    before = sandbox.get(P, token=token)
    sandbox.clock.advance(5)
    after = sandbox.get(P, token=token)

    assert before.status_code == 200
    assert (after.status_code, after.json()) == (403, FORBIDDEN_PROJECT)


def test_a_project_the_tokens_user_does_not_collaborate_on_answers_403_even_with_an_open_scope(
    sandbox: Sandbox,
) -> None:
    named = sandbox.add_token(enabled_projects={SEED.infra: None}, allow_trigger=True)

    open_scope = sandbox.get(f"/projects/{SEED.infra}/builds")
    named_scope = sandbox.post(
        f"/projects/{SEED.infra}/builds/{SEED.infra_failed_build}/restart", token=named
    )

    assert (open_scope.status_code, open_scope.json()) == (403, FORBIDDEN_PROJECT)
    assert (named_scope.status_code, named_scope.json()) == (403, FORBIDDEN_PROJECT)
    assert sandbox.get(f"/projects/{SEED.infra}/builds", role="read_only").status_code == 200


def test_a_project_that_does_not_exist_answers_403_because_scope_is_checked_first(sandbox: Sandbox) -> None:
    response = sandbox.get("/projects/00000000-0000-4000-8000-000000000000")

    assert response.json() == FORBIDDEN_PROJECT


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", f"{P}/builds/{SEED.failed_build}/restart"),
        ("DELETE", f"{P}/builds/{SEED.running_build}/abort"),
        ("POST", f"{P}/jobs/{SEED.failed_test_job}/restart"),
        ("POST", f"{P}/jobs/{SEED.failed_test_job}/rerun"),
        ("DELETE", f"{P}/jobs/{SEED.running_test_job}/abort"),
    ],
)
def test_every_write_without_trigger_permission_answers_403_and_changes_nothing(
    sandbox: Sandbox, method: str, path: str
) -> None:
    restarted_before = sandbox.rows("SELECT id FROM job WHERE restarted = 1")  # the seeded retries
    response = sandbox.request(method, path, role="read_only")

    assert response.status_code == 403
    assert response.json() == FORBIDDEN_TRIGGER
    assert sandbox.rows("SELECT COUNT(*) AS n FROM build")[0]["n"] == 15
    assert sandbox.rows("SELECT * FROM abort") == []
    assert sandbox.rows("SELECT id FROM job WHERE restarted = 1") == restarted_before


def test_project_scope_is_checked_before_trigger_permission(sandbox: Sandbox) -> None:
    token = sandbox.add_token("bob", enabled_projects={SEED.payments: None})

    response = sandbox.post(f"/projects/{SEED.frontend}/jobs/{SEED.frontend_e2e_job}/rerun", token=token)

    assert response.json() == FORBIDDEN_PROJECT


def test_trigger_permission_is_checked_before_existence_and_existence_before_state(sandbox: Sandbox) -> None:
    unknown = f"{P}/jobs/00000000-0000-4000-8000-000000000000/restart"
    running = f"{P}/jobs/{SEED.running_test_job}/restart"

    assert sandbox.post(unknown, role="read_only").json() == FORBIDDEN_TRIGGER
    assert sandbox.post(unknown).status_code == 404
    assert sandbox.post(running).json() == {
        "message": "job in state running cannot be restarted",
        "status": 400,
    }


def test_the_rate_limit_is_checked_before_the_project_scope(sandbox: Sandbox) -> None:
    for _ in range(30):
        sandbox.get("/projects", role="single_project")

    response = sandbox.get(f"/projects/{SEED.frontend}", role="single_project")

    assert response.status_code == 429


def test_the_sixth_write_within_60_s_answers_429_with_retry_after(sandbox: Sandbox) -> None:
    path = f"{P}/jobs/{SEED.running_test_job}/abort"
    answers = [sandbox.delete(path).status_code for _ in range(5)]

    limited = sandbox.delete(path)

    assert answers == [200] * 5
    assert limited.status_code == 429
    assert limited.json() == RATE_LIMITED
    assert limited.headers["Retry-After"] == "60"
    assert len(sandbox.rows("SELECT * FROM abort")) == 5


def test_the_trigger_bucket_frees_a_full_60_s_after_the_calls(sandbox: Sandbox) -> None:
    path = f"{P}/jobs/{SEED.running_test_job}/abort"
    for _ in range(6):
        sandbox.delete(path)

    sandbox.clock.advance(59)
    still_limited = sandbox.delete(path)
    sandbox.clock.advance(1)
    freed = sandbox.delete(path)

    assert still_limited.status_code == 429
    assert still_limited.headers["Retry-After"] == "1"
    assert freed.status_code == 200


def test_refused_attempts_use_slots_so_a_caller_that_keeps_calling_stays_limited(sandbox: Sandbox) -> None:
    path = f"{P}/jobs/{SEED.running_test_job}/abort"
    for _ in range(5):
        sandbox.delete(path)
    for _ in range(5):
        sandbox.clock.advance(10)
        assert sandbox.delete(path).status_code == 429

    sandbox.clock.advance(10)  # the five accepted calls have left the window, the refused ones have not
    limited = sandbox.delete(path)
    sandbox.clock.advance(60)
    freed = sandbox.delete(path)

    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "20"
    assert freed.status_code == 200


def test_calls_denied_with_403_use_slots_of_the_trigger_bucket(sandbox: Sandbox) -> None:
    path = f"{P}/builds/{SEED.failed_build}/restart"
    denied = [sandbox.post(path, role="read_only").status_code for _ in range(5)]

    limited = sandbox.post(path, role="read_only")

    assert denied == [403] * 5
    assert limited.status_code == 429


def test_the_trigger_bucket_is_per_user_across_tokens(sandbox: Sandbox) -> None:
    second_alice_token = sandbox.add_token("alice", allow_trigger=True)
    path = f"{P}/jobs/{SEED.running_test_job}/abort"
    for _ in range(3):
        sandbox.delete(path)
    for _ in range(2):
        sandbox.delete(path, token=second_alice_token)

    alice_again = sandbox.delete(path, token=second_alice_token)
    carol = sandbox.delete(path, role="single_project")

    assert alice_again.status_code == 429
    assert carol.status_code == 200


def test_the_five_writes_share_one_bucket(sandbox: Sandbox) -> None:
    answers = [
        sandbox.post(f"{P}/builds/{SEED.failed_build}/restart").status_code,
        sandbox.delete(f"{P}/builds/{SEED.running_build}/abort").status_code,
        sandbox.post(f"{P}/jobs/{SEED.failed_test_job}/restart").status_code,
        sandbox.post(f"{P}/jobs/{SEED.unstable_test_job}/rerun").status_code,
        sandbox.delete(f"{P}/jobs/{SEED.running_test_job}/abort").status_code,
        sandbox.post(f"{P}/builds/{SEED.green_build}/restart").status_code,
    ]

    assert answers == [200, 200, 200, 200, 200, 429]


@pytest.mark.parametrize(
    ("path", "limit"),
    [
        ("/projects", 30),
        (f"{P}/builds", 30),
        (f"{P}/builds/{SEED.failed_build}/jobs", 30),
        (f"{P}/jobs/{SEED.failed_test_job}/log", 10),
    ],
)
def test_each_read_bucket_has_its_own_limit(sandbox: Sandbox, path: str, limit: int) -> None:
    answers = [sandbox.get(path).status_code for _ in range(limit + 1)]

    assert answers == [200] * limit + [429]
    assert sandbox.get(path, role="read_only").status_code == 200  # another user has a bucket of their own


def test_read_buckets_are_separate_from_each_other_and_from_writes(sandbox: Sandbox) -> None:
    for _ in range(10):
        sandbox.get(f"{P}/jobs/{SEED.failed_test_job}/log")

    assert sandbox.get(f"{P}/jobs/{SEED.failed_test_job}/log").status_code == 429
    assert sandbox.get(f"{P}/jobs/{SEED.failed_test_job}").status_code == 200
    assert sandbox.delete(f"{P}/jobs/{SEED.running_test_job}/abort").status_code == 200


def test_a_successful_write_leaves_an_attempt_then_a_success_row(sandbox: Sandbox) -> None:
    sandbox.post(f"{P}/jobs/{SEED.failed_test_job}/restart")

    [attempt, success] = sandbox.rows("SELECT * FROM mcp_access_log ORDER BY id")
    assert attempt == {
        "id": attempt["id"],
        "token_id": TRIGGER[len("ib_mcp_") :][:16],
        "user_id": sandbox.user_id("alice"),
        "endpoint": "restart_job",
        "method": "POST",
        "path": f"/api/v1/mcp{P}/jobs/{SEED.failed_test_job}/restart",
        "project_id": SEED.payments,
        "status": "attempt",
        "http_status": None,
        "message": None,
        "created_at": sandbox.clock(),
    }
    assert (success["status"], success["http_status"]) == ("success", 200)


def test_refusals_and_failures_are_audited_including_400s(sandbox: Sandbox) -> None:
    sandbox.get("/projects")
    sandbox.get(f"/projects/{SEED.frontend}", role="single_project")
    sandbox.post(f"{P}/jobs/{SEED.running_test_job}/restart")
    sandbox.post(f"{P}/jobs/{SEED.running_test_job}/rerun", role="read_only")
    sandbox.get(f"{P}/builds/00000000-0000-4000-8000-000000000000")
    sandbox.get(f"{P}/builds/not-a-uuid")

    assert log_rows(sandbox) == [
        ("list_projects", "attempt", None),
        ("list_projects", "success", 200),
        ("get_project", "attempt", None),
        ("get_project", "forbidden", 403),
        ("restart_job", "attempt", None),
        ("restart_job", "failure", 400),
        ("rerun_job", "attempt", None),
        ("rerun_job", "forbidden", 403),
        ("get_build", "attempt", None),
        ("get_build", "failure", 404),
        ("get_build", "attempt", None),
        ("get_build", "failure", 404),
    ]
    messages = [
        row["message"] for row in sandbox.rows("SELECT message FROM mcp_access_log WHERE status != 'attempt'")
    ]
    assert messages[2] == "job in state running cannot be restarted"
    assert messages[3] == FORBIDDEN_TRIGGER["message"]


def test_a_rate_limited_call_is_audited_as_forbidden_and_a_401_is_not_audited(sandbox: Sandbox) -> None:
    for _ in range(6):
        sandbox.delete(f"{P}/jobs/{SEED.running_test_job}/abort")
    sandbox.get("/projects", headers={"Authorization": f"bearer {TRIGGER}"})

    assert log_rows(sandbox)[-2:] == [("abort_job", "attempt", None), ("abort_job", "forbidden", 429)]
    assert len(log_rows(sandbox)) == 12
