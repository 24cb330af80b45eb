"""The kinds a current failure is sorted into, and the one table of log patterns that mean "infrastructure".

A pattern is matched line by line against a job's console and its InfraBox message; the lines it matched are
the evidence. Each row is tested with a line it must match and one it must not (`tests/unit/test_failure_kinds.py`
is parametrized from this table, so a row without cases fails there). The other kinds come from test and build
facts, gathered by the tools; this module only names them and says what follows from each.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "ADVICE",
    "INFRA_PATTERNS",
    "FailureKind",
    "InfraMatch",
    "InfraPattern",
    "clone_suffix",
    "infrastructure_matches",
]

FailureKind = Literal["infrastructure", "flaky_suspect", "deterministic_suspect", "unknown"]


@dataclass(frozen=True)
class InfraPattern:
    name: str
    regex: re.Pattern[str]
    advice: str


def _p(name: str, regex: str, advice: str) -> InfraPattern:
    return InfraPattern(name, re.compile(regex, re.IGNORECASE), advice)


_RERUN = "rerun_job once"
INFRA_PATTERNS: tuple[InfraPattern, ...] = (
    _p(
        "out_of_memory",
        r"\bOOM[ -]?Killed\b|\bout of memory\b|\bCannot allocate memory\b|\bheap limit\b",
        f"the job ran out of memory: {_RERUN}; if it repeats, raise its memory limit or look at the runner",
    ),
    _p(
        "killed_137",
        r"\bexit(?:ed)?(?: with)?\s+(?:code|status)\W{0,3}137\b|\bSIGKILL\b|\bsignal 9\b|^\W*Killed\W*$|\b\d+ Killed\s",
        f"the container was killed (SIGKILL, exit 137; often memory): {_RERUN}, then look at the runner",
    ),
    _p(
        "runner_lost",
        r"\b(?:runner|node|agent|worker)\b.{0,40}\b(?:lost|disconnected|not ready|NotReady|went away)\b"
        r"|\bNodeLost\b|\bpod\b.{0,80}\bevicted\b|\bThe node was low on resource\b",
        f"the runner or node went away: {_RERUN}; if it repeats, look at the runner",
    ),
    _p(
        "image_pull",
        r"\bErrImagePull\b|\bImagePullBackOff\b|\bpull access denied\b|\bmanifest unknown\b"
        r"|\b(?:failed|error) (?:to pull|pulling) image\b|\btoomanyrequests\b",
        f"the image could not be pulled: check the image name and the registry, then {_RERUN}",
    ),
    _p(
        "registry_timeout",
        r"\bregistry\b.{0,120}\b(?:timeout|timed out)\b|\bTLS handshake timeout\b"
        r"|\bnet/http: request canceled while waiting for connection\b",
        f"the registry timed out: {_RERUN}; if it repeats, look at the registry",
    ),
    _p(
        "dns_failure",
        r"\bTemporary failure in name resolution\b|\bName or service not known\b|\bno such host\b"
        r"|\bCould not resolve host\b|\bgetaddrinfo (?:ENOTFOUND|EAI_AGAIN)\b",
        f"a host name did not resolve (DNS): {_RERUN}; if it repeats, look at the runner's network",
    ),
    _p(
        "connection_refused",
        r"\bConnection refused\b|\bECONNREFUSED\b",
        f"a service refused the connection (not up yet, or down): {_RERUN}; if it repeats, look at the service",
    ),
    _p(
        "disk_full",
        r"\bno space left on device\b|\bENOSPC\b|\bdisk quota exceeded\b",
        "the runner's disk is full: look at the runner (clean it) before a rerun",
    ),
)

ADVICE: dict[str, str] = {
    "infrastructure": "Not the code: rerun_job once (restart_job if downstream jobs were skipped); "
    "if it fails the same way again, look at the runner.",
    "flaky_suspect": "Rerun once (rerun_job, or restart_job if downstream jobs were skipped) and report the "
    "flaky test(s) to their owners; do not restart in a loop.",
    "deterministic_suspect": "Do not restart: the same failure repeats. Fix the code (or the test), then push.",
    "unknown": "Read the log first (get_job_log with this job's id, e.g. grep 'error|fail') before acting.",
}


@dataclass(frozen=True)
class InfraMatch:
    pattern: InfraPattern
    line: str


def infrastructure_matches(lines: Iterable[str], *, limit: int) -> list[InfraMatch]:
    """The first `limit` lines that match a pattern of `INFRA_PATTERNS`, each with the first pattern it matched."""
    found: list[InfraMatch] = []
    for line in lines:
        if len(found) >= limit:
            break
        text = line.strip()
        for pattern in INFRA_PATTERNS:
            if pattern.regex.search(text):
                found.append(InfraMatch(pattern, text))
                break
    return found


_SUFFIX = re.compile(r"^(?P<base>.+)\.(?P<n>[0-9]+)$")


def clone_suffix(name: str) -> tuple[str, int] | None:
    """`test.2` → ("test", 2): the name a clone's suffix was added to, and the suffix; None without one.

    Only digits after the last dot count (`build.v2` has none); whether `base` is really this job's
    original is for the caller to check against the build's other jobs.
    """
    match = _SUFFIX.match(name)
    return None if match is None else (match["base"], int(match["n"]))
