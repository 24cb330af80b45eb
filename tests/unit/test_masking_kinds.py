"""Every kind of secret CI logs leak is masked as `[MASKED:<kind>]`, and ordinary log text is left alone."""

from __future__ import annotations

import pytest

from mcp_ci_tools.domain.masking import KINDS, mask, mask_secrets
from mcp_ci_tools.domain.terminal import terminal_safe
from tests.leak_samples import GHP, JWT, LEAKS, PASSWORD


def test_every_kind_has_a_sample_and_every_sample_a_kind() -> None:
    assert set(LEAKS) == set(KINDS)
    assert all(kind == kind.lower() and " " not in kind and "_" not in kind for kind in KINDS)


@pytest.mark.parametrize("kind", list(LEAKS))
def test_each_kind_of_secret_is_masked_with_its_kind_and_the_rest_of_the_line_kept(kind: str) -> None:
    line, secret, masked = LEAKS[kind]

    assert mask(line) == masked
    assert secret not in mask(line)
    assert f"[MASKED:{kind}]" in masked


@pytest.mark.parametrize("kind", list(LEAKS))
def test_each_kind_is_masked_when_a_colour_code_splits_it_after_terminal_safe(kind: str) -> None:
    line, secret, masked = LEAKS[kind]
    cut = line.index(secret) + 2
    coloured = f"\x1b[1;31m{line[:cut]}\x1b[0m{line[cut:]}\x1b[0m"

    assert mask(terminal_safe(coloured)) == masked


@pytest.mark.parametrize(
    ("line", "masked"),
    [
        ("password=hunter2", "password=[MASKED:secret-assignment]"),
        ("passwd: s3cr3t!", "passwd: [MASKED:secret-assignment]"),
        ("  secret: 'Correct Horse'", "  secret: '[MASKED:secret-assignment]'"),
        ('{"github_token": "abc"}', '{"github_token": "[MASKED:secret-assignment]"}'),
        ("X-Api-Key: Abc123", "X-Api-Key: [MASKED:secret-assignment]"),
        ("?api_key=k3y&page=2", "?api_key=[MASKED:secret-assignment]&page=2"),
        ("MYSQL_ROOT_PASSWORD=rootpw", "MYSQL_ROOT_PASSWORD=[MASKED:secret-assignment]"),
        ("AWS_SECRET_ACCESS_KEY: abcd/EFGH+1234", "AWS_SECRET_ACCESS_KEY: [MASKED:aws-secret-access-key]"),
        (f"docker login --password {PASSWORD} r.io", "docker login --password [MASKED:cli-password] r.io"),
        (f"docker login --password={PASSWORD}", "docker login --password=[MASKED:cli-password]"),
        (f"docker login -p{PASSWORD} -u ci", "docker login -p[MASKED:cli-password] -u ci"),
        (
            f"curl -u ci: -H 'authorization: basic {PASSWORD}'",
            "curl -u ci: -H 'authorization: basic [MASKED:basic-auth]'",
        ),
        (f"token={GHP}", "token=[MASKED:github-pat]"),
        (f"Authorization: Bearer {JWT}", "Authorization: Bearer [MASKED:bearer]"),
    ],
)
def test_assignments_and_command_lines_mask_the_value_and_keep_the_name(line: str, masked: str) -> None:
    assert mask(line) == masked


@pytest.mark.parametrize(
    "line",
    [
        "HEAD is now at 3f2a9c1d4e5b6a7980112233445566778899aabb Merge pull request #12",
        "job 9e8d7c6b-5a4f-4e3d-8c2b-1a0f9e8d7c6b finished",
        "fixture: dGVzdCBkYXRhIGZvciB0aGUgc3VpdGU= (base64 of test data)",
        "password: ********",
        "Password: ****",
        "token expired, refreshing",
        "ERROR token: expired",
        "INFO auth.token: refreshed in 3 ms",
        "docker login --password-stdin registry.example.com",
        "echo $PASSWORD | docker login --password-stdin",
        "password: ${{ secrets.REGISTRY_PASSWORD }}",
        "GITHUB_TOKEN=$GITHUB_TOKEN",
        "max_tokens=4096 timeout=30",
        "token_count = 12",
        "secret=true",
        "tokenizer: bert-base-uncased",
        "tests/test_auth.py::test_token_refresh PASSED",
        "Downloading https://files.pythonhosted.org/packages/ab/cd/requests-2.31.0-py3-none-any.whl",
        "sk-learn and sk_something are not keys",
        "the eyJ prefix alone",
        "[MASKED:github-pat] password=[MASKED:secret-assignment]",
    ],
)
def test_ordinary_log_text_is_left_alone(line: str) -> None:
    assert mask_secrets(line) == (line, 0)


def test_masking_a_log_full_of_every_kind_twice_changes_nothing_the_second_time() -> None:
    log = "\n".join(line for line, _, _ in LEAKS.values())
    masked, count = mask_secrets(log)

    assert count >= len(LEAKS)
    assert mask_secrets(masked) == (masked, 0)
    assert masked.count("\n") == log.count("\n")
