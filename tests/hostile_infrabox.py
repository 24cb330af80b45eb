"""A hostile InfraBox for tests: an httpx transport whose answers drip, never end, nest, inflate or lie.

`HostileInfraBox(answer)` is an `httpx.AsyncBaseTransport`; `answer(request)` returns one of the answers
built below (or any `httpx.Response`). Every answer's body is a real stream, never read in advance, so the
client sees it the way it sees a socket: chunk by chunk. Each stream counts what it served and whether
the client closed it, so a test can assert that reading stopped at the cap and the connection was let go.

    drip(...)      headers at once, then one byte every `every_s` seconds (real time: keep deadlines small)
    stall(...)     no status line at all until `after_s` seconds have passed
    endless(...)   the same chunk forever
    gzip_bomb(...) an endless stream of zeros, gzip-compressed on the fly (about 1,000:1)
    body(...)      exactly these bytes, in 64 KiB chunks
    deep(n)        `[` n times, then `]` n times
"""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import anyio
import httpx

__all__ = [
    "Answer",
    "HostileInfraBox",
    "Stream",
    "body",
    "deep",
    "drip",
    "endless",
    "gzip_bomb",
    "stall",
]

_CHUNK = 64 * 1024


class Stream(httpx.AsyncByteStream):
    """A response body produced on demand; `served` counts the bytes handed out, `closed` the client's close."""

    def __init__(self, chunks: Callable[[], AsyncIterator[bytes]]) -> None:
        self._chunks = chunks
        self.served = 0
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._chunks():
            self.served += len(chunk)
            yield chunk

    async def aclose(self) -> None:
        self.closed = True


@dataclass
class Answer:
    """What the hostile server sends: status, headers, a body stream, and a wait before the status line."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    stream: Stream | None = None
    before_s: float = 0.0


AnswerFactory = Callable[[httpx.Request], Answer]


class HostileInfraBox(httpx.AsyncBaseTransport):
    """Serves `answer(request)` for every request; `requests` and `answers` record what happened."""

    def __init__(self, answer: AnswerFactory | Answer, *, record: bool = True) -> None:
        self._answer = answer if callable(answer) else (lambda request: answer)
        self._record = record  # off for memory tests: the records would hold every body served
        self.requests: list[httpx.Request] = []
        self.answers: list[Answer] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        answer = self._answer(request)
        if self._record:
            self.requests.append(request)
            self.answers.append(answer)
        if answer.before_s:
            await anyio.sleep(answer.before_s)
        stream = answer.stream or body(b"").stream
        assert stream is not None
        # Header values go out as bytes, the way a server writes them: "²" is the one latin-1 byte 0xB2.
        headers = [(name.encode(), _header_bytes(value)) for name, value in answer.headers.items()]
        return httpx.Response(answer.status, headers=headers, stream=stream, request=request)


def _header_bytes(value: str) -> bytes:
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:
        return value.encode("utf-8")


def _json_headers(headers: dict[str, str] | None) -> dict[str, str]:
    return {"Content-Type": "application/json", **(headers or {})}


def body(data: bytes, status: int = 200, headers: dict[str, str] | None = None) -> Answer:
    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(data), _CHUNK):
            yield data[start : start + _CHUNK]

    return Answer(status, _json_headers(headers), Stream(chunks))


def deep(depth: int, status: int = 200) -> Answer:
    return body(b"[" * depth + b"]" * depth, status)


def endless(chunk: bytes = b" " * _CHUNK, status: int = 200, headers: dict[str, str] | None = None) -> Answer:
    """`chunk` forever (spaces by default: whitespace is valid JSON padding, so only a cap can stop it)."""

    async def chunks() -> AsyncIterator[bytes]:
        while True:
            yield chunk
            await anyio.lowlevel.checkpoint()

    return Answer(status, _json_headers(headers), Stream(chunks))


def drip(data: bytes, *, every_s: float, status: int = 200, headers: dict[str, str] | None = None) -> Answer:
    """The status and headers at once, then `data` one byte every `every_s` seconds."""

    async def chunks() -> AsyncIterator[bytes]:
        for byte in data:
            yield bytes([byte])
            await anyio.sleep(every_s)

    return Answer(status, _json_headers(headers), Stream(chunks))


def stall(after_s: float, status: int = 200, data: bytes = b"{}") -> Answer:
    """Nothing at all for `after_s` seconds, then the answer."""
    answer = body(data, status)
    answer.before_s = after_s
    return answer


def gzip_bomb(status: int = 200) -> Answer:
    """Endless zeros, compressed as they are sent: each MiB of zeros costs about 1 KiB on the wire."""
    zeros = b"0" * (1024 * 1024)

    async def chunks() -> AsyncIterator[bytes]:
        compress = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
        while True:
            yield compress.compress(zeros) + compress.flush(zlib.Z_SYNC_FLUSH)
            await anyio.lowlevel.checkpoint()

    return Answer(status, _json_headers({"Content-Encoding": "gzip"}), Stream(chunks))
