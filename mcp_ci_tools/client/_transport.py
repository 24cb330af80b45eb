"""Sending to InfraBox: the shared connection pool, retries, the one way an answer is read, and the two
translations into our errors.

httpx exceptions are translated only in `_translate_transport_errors` and status codes only in
`_raise_for_status`; nothing else in the client catches httpx exceptions. A write is retried only when it
was certainly not sent; a read is retried on any transport failure and on 502/503/504.

Every answer is read the same way (`_read_answer`): streamed, decoded here (gzip/deflate, so the cap counts
decoded bytes and a gzip bomb is stopped at the cap, not after it), never more than the endpoint's byte
cap, and within one deadline (the client's `timeout`) that covers sending, the status line and the whole
body: httpx's own timeouts are per read, so a server dripping one byte at a time would never trip them.
"""

from __future__ import annotations

import email.utils
import functools
import logging
import math
import re
import time
import zlib
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC
from typing import TYPE_CHECKING, Any

import anyio

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
from mcp_ci_tools.client._models import _clean_text, _decode_json, _NotJson
from mcp_ci_tools.client._observe import Attempt, RequestObserver, RequestTarget
from mcp_ci_tools.domain.timestamps import Clock, Sleep

__all__ = ["ERROR_BYTES", "LIST_BYTES", "LOG_BYTES", "ONE_OBJECT_BYTES"]

log = logging.getLogger("mcp_ci_tools.client")

_MAX_ATTEMPTS = 3
# httpcore scans its whole pool on every request: more connections than this cost more than they bring.
_POOL_SIZE = 16
_MAX_RETRY_SECONDS = 10.0
_DEFAULT_RETRY_AFTER_S = 60
_READ_RETRY_STATUSES = frozenset({502, 503, 504})
_MAX_HONOURED_RETRY_AFTER_S = 10
_MAX_RETRY_AFTER_S = 3_600  # a longer Retry-After (or a date further ahead) is reported as one hour

_MIB = 1024 * 1024
# Decoded bytes read of an answer, per endpoint; past the cap the answer is cut off and not used.
ONE_OBJECT_BYTES = 1 * _MIB  # one project, build or job, and every write's answer
# Project, build, job and test-result lists: a build of 10,000 jobs with long messages is about 13 MiB,
# and test results carry stack traces.
LIST_BYTES = 16 * _MIB
LOG_BYTES = 64 * _MIB  # a whole console log; get_job_log shows a tail or grep of it
ERROR_BYTES = 64 * 1024  # a non-2xx answer: only its message is read, the rest is ignored
_CLOSE_SECONDS = 1.0
_ASCII_SECONDS = re.compile(r"[0-9]+")


@dataclass(frozen=True)
class _Answer:
    """An answer as read: the status, the headers and the body, or why the body was not used."""

    status_code: int
    headers: Mapping[str, str]
    body: bytes
    unread: str | None = None  # set when the body was cut off (too large, too slow, undecodable)


class _Deadline(Exception):
    """No complete answer within the whole-response deadline."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"no complete answer within {seconds:g} s")


class _Pool:
    """The one connection pool (an httpx transport) shared by every token's view of InfraBox.

    Requests are built here and handed straight to the transport, without an `httpx.AsyncClient` around it:
    nothing per client (cookie jar, base-URL merging, auth and redirect flows) is wanted, and a cookie jar
    shared by every token would send one caller's cookies with another's requests. Proxies come from the
    environment as httpx would take them (`HTTPS_PROXY`, `ALL_PROXY`, `NO_PROXY`, …).

    Created on the first request. Once closed it stays closed, and every request raises, until `open()`.
    """

    def __init__(self, timeout: float, transport: httpx.AsyncBaseTransport | None) -> None:
        self._timeout = timeout
        self._given = transport
        self._transport: httpx.AsyncBaseTransport | None = None
        self._closed = False
        self._headers = {
            "User-Agent": f"mcp-ci-tools/{__version__}",
            "Accept": "application/json",
            "Accept-Encoding": "gzip, deflate",  # only what `_Decoder` reads within the cap
            "Connection": "keep-alive",
        }
        self._timeouts: dict[str, float | None] = {
            "connect": timeout,
            "read": timeout,
            "write": timeout,
            "pool": timeout,
        }

    def open(self) -> None:
        self._closed = False

    async def aclose(self) -> None:
        # Every change happens before the await, so an open() that runs meanwhile is not undone.
        self._closed = True
        transport, self._transport = self._transport, None
        if transport is not None:
            await transport.aclose()

    def _get(self, url: str) -> httpx.AsyncBaseTransport:
        if self._closed:
            raise RuntimeError("InfraBox client is closed; call open() first")
        if self._transport is None:
            self._transport = self._given or _new_transport(url)
        return self._transport

    async def send(
        self,
        method: str,
        url: str,
        *,
        target: RequestTarget,
        observer: RequestObserver,
        token: str,
        request_id: str,
        write: bool,
        params: dict[str, Any] | None,
        sleep: Sleep,
        clock: Clock,
        cap: int,
        what: str,
    ) -> _Answer:
        """One call with its retries: a 2xx answer, or the InfraBoxError its failure maps to.

        A read's 2xx body is complete or the call fails. A write's 2xx answer is returned even when its body
        could not be read (`unread` says why): the status proves the write happened.
        Each attempt runs inside `observer.attempt(...)`, with the headers it adds (never over our own).
        """
        import httpx
        from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, stop_before_delay

        transport = self._get(url)
        request = httpx.Request(
            method,
            url,
            params=params,
            headers={**self._headers, "Authorization": f"Bearer {token}", "X-Request-ID": request_id},
            extensions={"timeout": self._timeouts},
        )
        own_headers = {name.lower() for name in request.headers}
        attempts = 0
        with _translate_transport_errors(request_id=request_id, write=write, timeout=self._timeout):
            async for attempt in AsyncRetrying(
                retry=retry_if_exception_type(_certainly_not_sent() if write else _read_retryable()),
                stop=stop_after_attempt(_MAX_ATTEMPTS) | stop_before_delay(_MAX_RETRY_SECONDS),
                wait=_wait_for_retry,
                sleep=sleep,
                before_sleep=_log_retry,
                reraise=True,
            ):
                attempts += 1
                watched = Attempt(target, attempts)
                with attempt, observer.attempt(watched):
                    request.headers.update(
                        {
                            name: value
                            for name, value in watched.headers.items()
                            if name.lower() not in own_headers
                        }
                    )
                    answer = await _read_answer(
                        transport, request, deadline_s=self._timeout, cap=cap, write=write, attempt=watched
                    )
                    if not write and answer.status_code in _READ_RETRY_STATUSES:
                        _raise_retryable_status(answer, request_id=request_id, now=clock())
        _raise_for_status(answer, request_id=request_id, write=write, now=clock())
        if answer.unread is not None:
            if not write:
                raise UpstreamBroken(
                    f"InfraBox {answer.unread} for {what}; the answer was cut off and not used",
                    status=answer.status_code,
                    request_id=request_id,
                )
            log.warning(
                "InfraBox accepted the write (%d) but %s; its fields are unknown (request id %s)",
                answer.status_code,
                answer.unread,
                request_id,
            )
        return answer


async def _read_answer(
    transport: httpx.AsyncBaseTransport,
    request: httpx.Request,
    *,
    deadline_s: float,
    cap: int,
    write: bool,
    attempt: Attempt,
) -> _Answer:
    """Send `request` and read its answer: at most `cap` decoded bytes (`ERROR_BYTES` for a non-2xx
    status), all within `deadline_s` seconds.

    Past the deadline before a status came, or for a read at any point, `_Deadline` is raised. After a
    status came, a write (or any non-2xx) keeps its status and leaves the body unread instead.
    """
    status: int | None = None
    headers: Mapping[str, str] = {}
    chunks: list[bytes] = []
    try:
        with anyio.fail_after(deadline_s):
            response = await transport.handle_async_request(request)
            code = status = attempt.status = response.status_code
            headers = response.headers
            try:
                limit = cap if 200 <= code < 300 else ERROR_BYTES
                # A transport that already read the body (respx, for one) hands it over decoded and in memory.
                preread = response.is_stream_consumed
                decoder = _Decoder("" if preread else response.headers.get("content-encoding", ""))
                size = 0
                async for raw in _preread(response) if preread else response.aiter_raw():
                    piece = decoder.decode(raw, limit - size)
                    size += len(piece)
                    if size > limit:
                        return _Answer(code, headers, b"", unread=f"sent more than {_size(limit)}")
                    chunks.append(piece)
                piece = decoder.flush(limit - size)
                if size + len(piece) > limit:
                    return _Answer(code, headers, b"", unread=f"sent more than {_size(limit)}")
                chunks.append(piece)
            except _transport_error():
                if write and 200 <= code < 300:  # the status proves the write happened; only the body is lost
                    return _Answer(code, headers, b"", unread="broke off while sending the answer")
                raise
            finally:
                with anyio.move_on_after(_CLOSE_SECONDS, shield=True):  # also after the deadline struck
                    await response.aclose()
    except TimeoutError:
        if status is None or (not write and 200 <= status < 300):
            raise _Deadline(deadline_s) from None
        return _Answer(status, headers, b"", unread=f"sent no complete answer within {deadline_s:g} s")
    except _Undecodable as error:
        assert status is not None  # raised only while reading a body
        return _Answer(status, headers, b"", unread=str(error))
    return _Answer(status, headers, b"".join(chunks))


async def _preread(response: httpx.Response) -> AsyncIterator[bytes]:
    yield response.content


def _new_transport(url: str) -> httpx.AsyncHTTPTransport:
    import httpx

    from mcp_ci_tools.client._sockets import check_idle_sockets_cheaply

    transport = httpx.AsyncHTTPTransport(
        limits=httpx.Limits(max_connections=_POOL_SIZE, max_keepalive_connections=_POOL_SIZE),
        proxy=_environment_proxy(url),
    )
    check_idle_sockets_cheaply(transport)
    return transport


def _environment_proxy(url: str) -> str | None:
    """The proxy the environment names for `url` (None: connect directly), read as httpx reads it."""
    import urllib.parse
    import urllib.request

    parts = urllib.parse.urlsplit(url)
    if parts.hostname is None:
        return None
    bypassed: bool = urllib.request.proxy_bypass_environment(parts.hostname)  # type: ignore[attr-defined]
    if bypassed:
        return None
    proxies = urllib.request.getproxies_environment()
    return proxies.get(parts.scheme) or proxies.get("all")


def _size(count: int) -> str:
    return f"{count // _MIB} MiB" if count % _MIB == 0 else f"{count} bytes"


class _Undecodable(Exception):
    """The body's Content-Encoding is unknown or its compressed data is broken."""


class _Decoder:
    """Undoes a Content-Encoding (identity, or one gzip or deflate layer), producing at most the room left
    (plus one byte, to tell "exactly at the cap" from "past it") however much a chunk inflates."""

    def __init__(self, content_encoding: str) -> None:
        names = [name.strip().lower() for name in content_encoding.split(",") if name.strip()]
        layers = [name for name in names if name != "identity"]
        unknown = [name for name in layers if name not in ("gzip", "x-gzip", "deflate")]
        if unknown:
            raise _Undecodable(
                f"sent the answer in an encoding this client does not read ({unknown[0][:40]!r})"
            )
        if len(layers) > 1:
            raise _Undecodable("sent the answer compressed more than once")
        self._inflate: Any = None
        if layers:
            self._inflate = _Deflate() if layers[0] == "deflate" else zlib.decompressobj(zlib.MAX_WBITS | 16)

    def decode(self, data: bytes, room: int) -> bytes:
        if self._inflate is None:
            return data
        try:
            out: bytes = self._inflate.decompress(data, max(room, 0) + 1)
        except zlib.error:
            raise _Undecodable("sent a compressed answer that does not decompress") from None
        return out

    def flush(self, room: int) -> bytes:
        """What the decompressor still holds once the body has ended (usually nothing)."""
        if self._inflate is None:
            return b""
        try:
            out: bytes = self._inflate.flush()
        except zlib.error:
            raise _Undecodable("sent a compressed answer that does not decompress") from None
        return out


class _Deflate:
    """`deflate` as servers send it: zlib-wrapped, or (some) raw, as httpx reads it too."""

    def __init__(self) -> None:
        self._inflate = zlib.decompressobj()
        self._started = False

    def decompress(self, data: bytes, max_length: int) -> bytes:
        if not self._started:
            self._started = True
            try:
                return self._inflate.decompress(data, max_length)
            except zlib.error:
                self._inflate = zlib.decompressobj(-zlib.MAX_WBITS)
        return self._inflate.decompress(data, max_length)

    def flush(self) -> bytes:
        return self._inflate.flush()


@functools.cache
def _transport_error() -> type[Exception]:
    import httpx

    return httpx.TransportError


@functools.cache
def _certainly_not_sent() -> tuple[type[Exception], ...]:
    """Only these mean the request never left this machine, so only these may be retried for a write."""
    import httpx

    return (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


@functools.cache
def _read_retryable() -> tuple[type[Exception], ...]:
    """Reads are idempotent: any transport failure may be retried, a dropped connection included."""
    import httpx

    return (httpx.TransportError, _RetryableStatus, _Deadline)


class _RetryableStatus(Exception):
    """A read answered 502/503/504: worth another attempt, after `wait_s` if InfraBox said so."""

    def __init__(self, answer: _Answer, wait_s: float | None) -> None:
        super().__init__(f"InfraBox answered {answer.status_code}")
        self.answer = answer
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


def _raise_retryable_status(answer: _Answer, *, request_id: str, now: float) -> None:
    if "retry-after" not in answer.headers:
        raise _RetryableStatus(answer, None)
    wait = _retry_after_s(answer.headers, now)
    if wait > _MAX_HONOURED_RETRY_AFTER_S:
        raise UpstreamBroken(
            f"InfraBox is unavailable ({answer.status_code}) and asks to wait {wait} s",
            status=answer.status_code,
            reason=_message_of(answer),
            request_id=request_id,
            retry_after_s=wait,
        )
    raise _RetryableStatus(answer, float(wait))


@contextmanager
def _translate_transport_errors(*, request_id: str, write: bool, timeout: float) -> Iterator[None]:
    import httpx

    try:
        yield
    except _RetryableStatus as error:
        _raise_for_status(error.answer, request_id=request_id, write=write, now=time.time())
        raise  # pragma: no cover - 5xx always raises above
    except _certainly_not_sent() as error:
        raise InfraBoxUnreachable(
            f"could not connect to InfraBox ({type(error).__name__})", request_id=request_id
        ) from error
    except (httpx.TransportError, _Deadline) as error:
        kind = str(error) if isinstance(error, _Deadline) else type(error).__name__
        if write:
            raise OutcomeUnknown(f"sent, but no answer came back ({kind})", request_id=request_id) from error
        raise UpstreamBroken(f"no usable answer from InfraBox ({kind})", request_id=request_id) from error


def _raise_for_status(answer: _Answer, *, request_id: str, write: bool, now: float) -> None:
    status = answer.status_code
    if 200 <= status < 300:
        return
    reason = _message_of(answer)
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
        raise RateLimited("InfraBox rate limit", retry_after_s=_retry_after_s(answer.headers, now), **common)
    if status >= 500 and write:
        raise OutcomeUnknown(f"InfraBox answered {status}", **common)
    raise UpstreamBroken(f"unexpected answer {status} from InfraBox", **common)


def _message_of(answer: _Answer) -> str | None:
    """InfraBox's message in an error answer, cleaned and cut; None when the body says nothing usable."""
    if answer.unread is not None:
        return None
    try:
        body = _decode_json(answer.body)
    except _NotJson:
        return _clean_text(answer.body[:ERROR_BYTES].decode("utf-8", "replace"))
    if isinstance(body, dict):
        return _clean_text(body.get("message"))
    return _clean_text(body) if isinstance(body, str) else None


def _retry_after_s(headers: Mapping[str, str], now: float) -> int:
    """Seconds to wait from a Retry-After header, between 1 and `_MAX_RETRY_AFTER_S`; 60 when it is
    absent or unreadable. Only ASCII digits count as seconds ("²" is not a digit here)."""
    header = headers.get("retry-after", "").strip()
    if not header:
        return _DEFAULT_RETRY_AFTER_S
    if _ASCII_SECONDS.fullmatch(header):
        # Past 10 digits it is over the clamp anyway; int() of 5000 digits would raise.
        return _MAX_RETRY_AFTER_S if len(header) > 10 else max(1, min(int(header), _MAX_RETRY_AFTER_S))
    if len(header) > 64:
        return _DEFAULT_RETRY_AFTER_S
    try:
        parsed = email.utils.parsedate_to_datetime(header)
        when = (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError, OSError):
        return _DEFAULT_RETRY_AFTER_S
    wait = when - now
    if math.isnan(wait):
        return _DEFAULT_RETRY_AFTER_S
    return max(1, min(math.ceil(min(wait, _MAX_RETRY_AFTER_S)), _MAX_RETRY_AFTER_S))
