"""The seam through which the rest of the server watches the requests sent to InfraBox (metrics, traces).

The client knows no metrics or tracing library: every attempt of every request (a retry is another attempt)
runs inside `RequestObserver.attempt(...)`. The observer sees the endpoint's path template and the ids that
filled it, may add headers to that attempt (e.g. W3C `traceparent`), and sees its status or its exception.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Protocol

__all__ = ["API_PATH", "NO_OBSERVER", "Attempt", "RequestObserver", "RequestTarget"]

API_PATH = "/api/v1/mcp"


@dataclass(frozen=True)
class RequestTarget:
    """One request as the observer may see it: never a token, and the path only as its template."""

    method: str  # "GET", "POST", "DELETE"
    template: str  # e.g. "/api/v1/mcp/projects/{project_id}/builds/{build_id}", below InfraBox's root URL
    ids: Mapping[str, str]  # the values that fill the template: project_id, build_id, job_id
    server_address: str  # InfraBox's host name
    server_port: int | None


@dataclass
class Attempt:
    """One attempt at sending a request (`number` 1, then 2, 3 for retries)."""

    target: RequestTarget
    number: int
    headers: dict[str, str] = field(default_factory=dict)  # the observer's extra headers for this attempt
    status: int | None = None  # set by the client once InfraBox's status line arrived


class RequestObserver(Protocol):
    def attempt(self, attempt: Attempt) -> AbstractContextManager[object]:
        """Entered before the attempt is sent (add `attempt.headers` here), left when its answer was read
        or its exception is raised through it."""
        ...


class _NoObserver:
    @contextmanager
    def attempt(self, attempt: Attempt) -> Iterator[None]:
        yield


NO_OBSERVER: RequestObserver = _NoObserver()
