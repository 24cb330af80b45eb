"""Sending to InfraBox: the shared connection pool, retries, and the two translations into our errors.

httpx exceptions are translated only in `_translate_transport_errors` and status codes only in
`_raise_for_status`; nothing else in the client catches httpx exceptions. A write is retried only when it
was certainly not sent; a read is retried on any transport failure and on 502/503/504.
"""

from __future__ import annotations

import email.utils
import functools
import logging
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # httpx and tenacity load on the first request: a stdio start-up lists tools without them
    import httpx
    from tenacity import RetryCallState

from mcp_ci_tools import __version__
from mcp_ci_tools.client._errors import (
    Forbidden,
    InfraBoxUnreachable,
    NotFound,
    NotPossibleNow,
    OutcomeUnknown,
    RateLimited,
    TokenRejected,
    UpstreamBroken,
)
from mcp_ci_tools.client._models import _clean_text
from mcp_ci_tools.domain.timestamps import Clock, Sleep

__all__: list[str] = []

log = logging.getLogger("mcp_ci_tools.client")

_MAX_ATTEMPTS = 3
# httpcore scans its whole pool on every request: more connections than this cost more than they bring.
_POOL_SIZE = 16
_MAX_RETRY_SECONDS = 10.0
_DEFAULT_RETRY_AFTER_S = 60
_READ_RETRY_STATUSES = frozenset({502, 503, 504})
_MAX_HONOURED_RETRY_AFTER_S = 10


class _Pool:
    """The one httpx client (connection pool) shared by every token's view of InfraBox.

    Created on the first request. Once closed it stays closed, and every request raises, until `open()`.
    """

    def __init__(self, timeout: float, transport: httpx.AsyncBaseTransport | None) -> None:
        self._timeout = timeout
        self._transport = transport
        self._http: httpx.AsyncClient | None = None
        self._closed = False

    def open(self) -> None:
        self._closed = False

    async def aclose(self) -> None:
        # Every change happens before the await, so an open() that runs meanwhile is not undone.
        self._closed = True
        http, self._http = self._http, None
        if http is not None:
            await http.aclose()

    def _get(self) -> httpx.AsyncClient:
        if self._closed:
            raise RuntimeError("InfraBox client is closed; call open() first")
        if self._http is None:
            import httpx

            self._http = httpx.AsyncClient(
                transport=self._transport,
                timeout=self._timeout,
                follow_redirects=False,
                limits=httpx.Limits(max_connections=_POOL_SIZE, max_keepalive_connections=_POOL_SIZE),
                headers={"User-Agent": f"mcp-ci-tools/{__version__}", "Accept": "application/json"},
            )
        return self._http

    async def send(
        self,
        method: str,
        url: str,
        *,
        token: str,
        request_id: str,
        write: bool,
        params: dict[str, Any] | None,
        sleep: Sleep,
        clock: Clock,
    ) -> httpx.Response:
        """One call with its retries; a 2xx answer, or the InfraBoxError its failure maps to."""
        from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, stop_before_delay

        client = self._get()
        request = client.build_request(
            method,
            url,
            params=params,
            headers={"Authorization": f"Bearer {token}", "X-Request-ID": request_id},
        )
        with _translate_transport_errors(request_id=request_id, write=write):
            async for attempt in AsyncRetrying(
                retry=retry_if_exception_type(_certainly_not_sent() if write else _read_retryable()),
                stop=stop_after_attempt(_MAX_ATTEMPTS) | stop_before_delay(_MAX_RETRY_SECONDS),
                wait=_wait_for_retry,
                sleep=sleep,
                before_sleep=_log_retry,
                reraise=True,
            ):
                with attempt:
                    response = await client.send(request)
                    if not write and response.status_code in _READ_RETRY_STATUSES:
                        _raise_retryable_status(response, request_id=request_id, now=clock())
        _raise_for_status(response, request_id=request_id, write=write, now=clock())
        return response


@functools.cache
def _certainly_not_sent() -> tuple[type[Exception], ...]:
    """Only these mean the request never left this machine, so only these may be retried for a write."""
    import httpx

    return (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


@functools.cache
def _read_retryable() -> tuple[type[Exception], ...]:
    """Reads are idempotent: any transport failure may be retried, a dropped connection included."""
    import httpx

    return (httpx.TransportError, _RetryableStatus)


class _RetryableStatus(Exception):
    """A read answered 502/503/504: worth another attempt, after `wait_s` if InfraBox said so."""

    def __init__(self, response: httpx.Response, wait_s: float | None) -> None:
        super().__init__(f"InfraBox answered {response.status_code}")
        self.response = response
        self.wait_s = wait_s


@functools.cache
def _backoff() -> Callable[[RetryCallState], float]:
    from tenacity import wait_exponential_jitter

    return wait_exponential_jitter(multiplier=0.5, max=4, jitter=0.5)


def _wait_for_retry(state: RetryCallState) -> float:
    error = state.outcome.exception() if state.outcome else None
    if isinstance(error, _RetryableStatus) and error.wait_s is not None:
        return error.wait_s
    return _backoff()(state)


def _log_retry(state: RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome else None
    wait = state.next_action.sleep if state.next_action else 0.0
    log.warning(
        "InfraBox call failed (%s), attempt %d of %d; retrying in %.2f s",
        type(error).__name__,
        state.attempt_number,
        _MAX_ATTEMPTS,
        wait,
    )


def _raise_retryable_status(response: httpx.Response, *, request_id: str, now: float) -> None:
    if "retry-after" not in response.headers:
        raise _RetryableStatus(response, None)
    wait = _retry_after_s(response, now)
    if wait > _MAX_HONOURED_RETRY_AFTER_S:
        raise UpstreamBroken(
            f"InfraBox is unavailable ({response.status_code}) and asks to wait {wait} s",
            status=response.status_code,
            reason=_message_of(response),
            request_id=request_id,
            retry_after_s=wait,
        )
    raise _RetryableStatus(response, float(wait))


@contextmanager
def _translate_transport_errors(*, request_id: str, write: bool) -> Iterator[None]:
    import httpx

    try:
        yield
    except _RetryableStatus as error:
        _raise_for_status(error.response, request_id=request_id, write=write, now=time.time())
        raise  # pragma: no cover - 5xx always raises above
    except _certainly_not_sent() as error:
        raise InfraBoxUnreachable(
            f"could not connect to InfraBox ({type(error).__name__})", request_id=request_id
        ) from error
    except httpx.TransportError as error:
        kind = type(error).__name__
        if write:
            raise OutcomeUnknown(f"sent, but no answer came back ({kind})", request_id=request_id) from error
        raise UpstreamBroken(f"no usable answer from InfraBox ({kind})", request_id=request_id) from error


def _raise_for_status(response: httpx.Response, *, request_id: str, write: bool, now: float) -> None:
    status = response.status_code
    if 200 <= status < 300:
        return
    reason = _message_of(response)
    common: dict[str, Any] = {"status": status, "reason": reason, "request_id": request_id}
    if status == 401:
        raise TokenRejected("InfraBox rejected the token", **common)
    if status == 403:
        kind = "no_trigger_permission" if reason and "trigger permission" in reason else "project_not_enabled"
        raise Forbidden("InfraBox refused access", kind=kind, **common)
    if status == 404:
        raise NotFound("not found", status=status, request_id=request_id)
    if status in (400, 409, 422):
        raise NotPossibleNow("InfraBox refused the operation in the current state", **common)
    if status == 429:
        raise RateLimited("InfraBox rate limit", retry_after_s=_retry_after_s(response, now), **common)
    if status >= 500 and write:
        raise OutcomeUnknown(f"InfraBox answered {status}", **common)
    raise UpstreamBroken(f"unexpected answer {status} from InfraBox", **common)


def _message_of(response: httpx.Response) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return _clean_text(response.text)
    if isinstance(body, dict):
        return _clean_text(body.get("message"))
    return _clean_text(body) if isinstance(body, str) else None


def _retry_after_s(response: httpx.Response, now: float) -> int:
    header = response.headers.get("retry-after", "").strip()
    if header.isdigit():
        return max(1, int(header))
    if header:
        try:
            when = email.utils.parsedate_to_datetime(header).timestamp()
        except (TypeError, ValueError, IndexError):
            return _DEFAULT_RETRY_AFTER_S
        return max(1, math.ceil(when - now))
    return _DEFAULT_RETRY_AFTER_S
