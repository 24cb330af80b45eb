"""The audit trail: one hash-chained JSON line for every tool call, refused ones included.

`AuditLog` renders `AuditRecord`s and hands them to a sink: `JsonlFileSink` (a file, the default) or
`StdoutSink` (`MCP_CI_AUDIT_LOG=-`). `trail` reads the files back for `mcp-ci-tools audit verify|show|stats`.
"""

from mcp_ci_tools.audit._chain import GENESIS, ChainHead
from mcp_ci_tools.audit._file import JsonlFileSink
from mcp_ci_tools.audit._log import (
    AuditLog,
    AuditRecord,
    AuditSink,
    AuditUnavailable,
    Confirmation,
    Decision,
    Outcome,
    RecordObserver,
    TraceIdSource,
    UnsafeAuditFile,
    WriteFunction,
)
from mcp_ci_tools.audit._stdout import STDOUT, StdoutSink

__all__ = [
    "GENESIS",
    "STDOUT",
    "AuditLog",
    "AuditRecord",
    "AuditSink",
    "AuditUnavailable",
    "ChainHead",
    "Confirmation",
    "Decision",
    "JsonlFileSink",
    "Outcome",
    "RecordObserver",
    "StdoutSink",
    "TraceIdSource",
    "UnsafeAuditFile",
    "WriteFunction",
]
