"""The InfraBox `/api/v1/mcp` client: one method per endpoint, typed results, one error tree.

    InfraBoxError(message, *, status=None, reason=None, request_id=None)
      InfraBoxUnreachable   certainly not sent (connect error, connect/pool timeout), after the retries ran out
      OutcomeUnknown        a write was sent but no usable answer came back (read timeout, reset, 5xx)
      TokenRejected         401
      Forbidden             403; .kind is "project_not_enabled" or "no_trigger_permission"
      NotFound              404
      NotPossibleNow        400, 409, 422: the state does not allow it (.reason is InfraBox's text)
      RateLimited           429; .retry_after_s
      UpstreamBroken        any other answer, or a read that got no usable answer

The package is split the way httpx is: `_errors` (this tree), `_models` (what InfraBox answers, normalised),
`_transport` (the pool, retries, the one way an answer is read: streamed, within the whole-response deadline
`timeout`, at most a byte cap per endpoint; and the only translation of httpx errors and status codes: a
write is retried only when it was certainly not sent) and `_client` (`InfraBoxClient`, one method per
endpoint). `_observe` is the seam metrics and traces watch every attempt through (`RequestObserver`).
httpx and tenacity load on the first request, not on import. The pool opens on that first request; after
`aclose()` every request raises RuntimeError until `open()`.
"""

from mcp_ci_tools.client._client import InfraBoxClient
from mcp_ci_tools.client._errors import (
    Forbidden,
    InfraBoxError,
    InfraBoxUnreachable,
    NotFound,
    NotPossibleNow,
    OutcomeUnknown,
    RateLimited,
    TokenRejected,
    UpstreamBroken,
)
from mcp_ci_tools.client._models import (
    Build,
    BuildAborted,
    BuildRestarted,
    Job,
    JobAborted,
    JobLog,
    JobRerun,
    JobRestarted,
    Page,
    Project,
    TestRun,
    WriteAnswer,
)
from mcp_ci_tools.client._observe import NO_OBSERVER, Attempt, RequestObserver, RequestTarget
from mcp_ci_tools.client._transport import ERROR_BYTES, LIST_BYTES, LOG_BYTES, ONE_OBJECT_BYTES

__all__ = [
    "ERROR_BYTES",
    "LIST_BYTES",
    "LOG_BYTES",
    "NO_OBSERVER",
    "ONE_OBJECT_BYTES",
    "Attempt",
    "Build",
    "BuildAborted",
    "BuildRestarted",
    "Forbidden",
    "InfraBoxClient",
    "InfraBoxError",
    "InfraBoxUnreachable",
    "Job",
    "JobAborted",
    "JobLog",
    "JobRerun",
    "JobRestarted",
    "NotFound",
    "NotPossibleNow",
    "OutcomeUnknown",
    "Page",
    "Project",
    "RateLimited",
    "RequestObserver",
    "RequestTarget",
    "TestRun",
    "TokenRejected",
    "UpstreamBroken",
    "WriteAnswer",
]
