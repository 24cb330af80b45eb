"""The hash chain of the audit trail: each line names its place and the line before it.

Every line is a JSON object that begins `{"seq":N,"prev":"<sha256>",…`: `seq` counts the lines of the
chain from 1, and `prev` is the SHA-256 (hex) of the previous line exactly as written, without its
newline (64 zeros for the first line of a new chain). So an edited, removed, inserted or reordered line
breaks the chain at a place `audit verify` can name, and a file that continues another one (after a
rotation) names the last line of the file before it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

__all__ = ["GENESIS", "ChainHead", "chained", "digest", "head_of"]

GENESIS = "0" * 64


@dataclass(frozen=True)
class ChainHead:
    """The last line of a chain: its `seq` (0 for a line written before the chain existed) and digest."""

    seq: int
    digest: str


def digest(line: bytes) -> str:
    """The SHA-256 of one line as written, without its newline."""
    return hashlib.sha256(line.removesuffix(b"\n")).hexdigest()


def chained(line: str, head: ChainHead | None) -> tuple[bytes, ChainHead]:
    """`line` (a JSON object, one line) with `seq` and `prev` after `head` (None: a new chain), encoded and
    ended by a newline, and the head it makes."""
    if "\n" in line:
        raise ValueError("an audit line must not contain a newline")
    if not line.startswith("{"):
        raise ValueError("an audit line must be a JSON object")
    seq, prev = (1, GENESIS) if head is None else (head.seq + 1, head.digest)
    rest = line[1:].lstrip()
    data = f'{{"seq":{seq},"prev":"{prev}"{"" if rest.startswith("}") else ","}{rest}'.encode()
    return data + b"\n", ChainHead(seq, digest(data))


def head_of(line: bytes) -> ChainHead:
    """The chain head a written line makes: its own `seq` (0 if it has none: written before the chain, or
    not a record at all) and its digest."""
    try:
        record = json.loads(line)
    except ValueError:
        record = None
    seq = record.get("seq") if isinstance(record, dict) else None
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
        seq = 0
    return ChainHead(seq, digest(line))
