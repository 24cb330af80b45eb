"""`MCP_CI_AUDIT_LOG=-`: the audit records as lines on standard output, for a container's log collector."""

from __future__ import annotations

import errno
import os
import threading
from pathlib import Path

from mcp_ci_tools.audit._chain import ChainHead, chained
from mcp_ci_tools.audit._log import WriteFunction

__all__ = ["STDOUT", "StdoutSink"]

STDOUT = Path("-")  # MCP_CI_AUDIT_LOG=-: the records go to standard output (HTTP transports only)


class StdoutSink:
    """Writes each record as one hash-chained line to standard output.

    Only with the HTTP transports, where stdout carries nothing else (logs go to stderr); over stdio it is
    the protocol channel, so configuration refuses `-` there. Each line is one `write(2)` under a lock, so
    lines never interleave; `durable` cannot be more than that on a pipe (fsync does not apply to one).
    A pipe cannot be read back, so the chain starts anew at each start of the process (`prev` all zeros).
    """

    def __init__(self, fd: int = 1, *, write: WriteFunction = os.write) -> None:
        self._fd = fd
        self._write = write
        self._lock = threading.Lock()
        self._head: ChainHead | None = None

    def write(self, line: str, *, durable: bool) -> None:
        with self._lock:
            data, head = chained(line, self._head)
            done = 0
            while done < len(data):
                written = self._write(self._fd, data[done:])
                if written <= 0:
                    raise OSError(errno.EIO, "write(2) to standard output wrote nothing")
                done += written
            self._head = head
