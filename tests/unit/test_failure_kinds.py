"""The infrastructure pattern table, row by row: each row matches its positive line and not its negative one."""

from __future__ import annotations

import pytest

from mcp_ci_tools.domain.failure_kinds import ADVICE, INFRA_PATTERNS, clone_suffix, infrastructure_matches

# name → (a line the row must match, a line no row may match)
CASES = {
    "out_of_memory": (
        "lint: OOMKilled: container exceeded its 2Gi memory limit",
        "memory usage 512 MiB of 2 GiB; peak 640 MiB",
    ),
    "killed_137": (
        "/bin/sh: line 1:    57 Killed                  pytest -q",
        "Container exited with code 1",
    ),
    "runner_lost": (
        "ERROR: lost connection to runner; node ip-10-0-3-7 lost",
        "runner ip-10-0-3-7 picked up the job",
    ),
    "image_pull": (
        "Failed: ErrImagePull registry.example/payments/build:build_41",
        "Successfully pulled image registry.example/payments/build:build_41",
    ),
    "registry_timeout": (
        "Get https://registry.sandbox.local/v2/: net/http: TLS handshake timeout",
        "Pushing registry.sandbox.local/payments/build:build_41",
    ),
    "dns_failure": (
        "psycopg2.OperationalError: could not translate host name: Temporary failure in name resolution",
        "resolved postgres to 10.0.0.12",
    ),
    "connection_refused": (
        "requests.exceptions.ConnectionError: [Errno 111] Connection refused",
        "connection to postgres:5432 established",
    ),
    "disk_full": (
        "write /var/lib/docker/tmp/layer.tar: no space left on device",
        "Filesystem /dev/sda1 is 41% used",
    ),
}


def test_every_row_of_the_table_has_cases_and_every_case_a_row() -> None:
    assert [p.name for p in INFRA_PATTERNS] == list(CASES)
    assert len({p.name for p in INFRA_PATTERNS}) == len(INFRA_PATTERNS)


@pytest.mark.parametrize("pattern", INFRA_PATTERNS, ids=lambda p: p.name)
def test_a_row_matches_its_positive_line(pattern) -> None:
    positive, _ = CASES[pattern.name]
    assert pattern.regex.search(positive)
    [match] = infrastructure_matches([positive], limit=3)
    assert match.pattern.name == pattern.name and match.line == positive


@pytest.mark.parametrize("pattern", INFRA_PATTERNS, ids=lambda p: p.name)
def test_no_row_matches_a_negative_line(pattern) -> None:
    _, negative = CASES[pattern.name]
    assert not pattern.regex.search(negative)
    assert infrastructure_matches([negative], limit=3) == []


def test_matches_are_bounded_and_come_in_log_order() -> None:
    lines = ["Killed", "ok", "no space left on device", "Connection refused", "Killed"]
    found = infrastructure_matches(lines, limit=2)
    assert [(m.pattern.name, m.line) for m in found] == [
        ("killed_137", "Killed"),
        ("disk_full", "no space left on device"),
    ]


def test_every_kind_has_advice() -> None:
    assert set(ADVICE) == {"infrastructure", "flaky_suspect", "deterministic_suspect", "unknown"}
    assert "Do not restart" in ADVICE["deterministic_suspect"]
    assert "get_job_log" in ADVICE["unknown"]


@pytest.mark.parametrize(
    ("name", "expected"),
    [("test.1", ("test", 1)), ("test.12", ("test", 12)), ("build.v2", None), ("test", None), (".1", None)],
)
def test_only_digits_after_the_last_dot_are_a_clone_suffix(name, expected) -> None:
    assert clone_suffix(name) == expected
