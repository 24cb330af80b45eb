"""`mcp-ci-tools audit verify|show|stats [FILE…]`: check the audit trail and answer questions from it.

Without files, the audit files of `MCP_CI_AUDIT_LOG` (or its default) are read: every replica's file when
the name holds `{host}`, and their rotated copies. `verify` exits 1 when the trail was changed, naming the
first bad line; `show` and `stats` exit 2 when a file cannot be read.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import sys
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from mcp_ci_tools.audit.trail import Call, Verdict, calls, verify
from mcp_ci_tools.config import default_audit_path

__all__ = ["main"]

_OUTCOMES = ("success", "error", "unknown", "denied", "no_result")
_RELATIVE = re.compile(r"([0-9]+)\s*([smhdw])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


class _UsageError(Exception):
    pass


def main(argv: Sequence[str], environ: Mapping[str, str] | None = None, out: TextIO | None = None) -> int:
    environ = os.environ if environ is None else environ
    out = sys.stdout if out is None else out
    args = _parser().parse_args(list(argv))
    try:
        paths = [Path(name) for name in args.files] or _configured_files(environ)
        command: Callable[[argparse.Namespace, list[Path], TextIO], int] = args.command
        return command(args, paths, out)
    except _UsageError as error:
        print(f"mcp-ci-tools audit: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"mcp-ci-tools audit: cannot read {error.filename}: {error.strerror or error}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mcp-ci-tools audit",
        description="Check the audit trail's hash chain, and list or count the calls it records.",
        epilog="Without FILE, the files of MCP_CI_AUDIT_LOG are read ({host} matches every replica's file), "
        "with their rotated copies.",
    )
    commands = parser.add_subparsers(required=True, metavar="{verify,show,stats}")
    check = commands.add_parser(
        "verify",
        help="check every line and the hash chain; exit 1 naming the first bad line",
        description="Check that every line is whole JSON and continues the line before it (seq, prev). "
        "Exit 0 and a one-line summary when the trail is whole; exit 1 naming the first bad line.",
    )
    check.set_defaults(command=_verify)
    show = commands.add_parser(
        "show", help="the matching calls, one line each (attempts paired with results)"
    )
    show.set_defaults(command=_show)
    stats = commands.add_parser("stats", help="counts per tool, decision, outcome, token and denial reason")
    stats.set_defaults(command=_stats)
    for command in (check, show, stats):
        command.add_argument("files", nargs="*", metavar="FILE", help="audit files (.gz too), merged by time")
    for command in (show, stats):
        command.add_argument(
            "--token", metavar="FP", help="a token fingerprint (sha256:…) or token_sha256 prefix"
        )
        command.add_argument("--project", metavar="ID", help="calls about this project")
        command.add_argument("--build", metavar="ID", help="calls about this build (or that created it)")
        command.add_argument("--job", metavar="ID", help="calls about this job (or that created it)")
        command.add_argument("--tool", metavar="NAME", action="append", help="this tool (repeatable)")
        command.add_argument(
            "--outcome", choices=_OUTCOMES, action="append", help="this outcome (repeatable)"
        )
        command.add_argument(
            "--since",
            metavar="TIME",
            type=_time,
            help="from TIME: ISO 8601 (UTC unless it says) or an age such as 30m, 12h, 7d",
        )
        command.add_argument("--until", metavar="TIME", type=_time, help="up to TIME (same forms)")
        command.add_argument(
            "--json", action="store_true", help="JSON lines (show) or one JSON object (stats)"
        )
    return parser


def _configured_files(environ: Mapping[str, str]) -> list[Path]:
    template = environ.get("MCP_CI_AUDIT_LOG") or str(default_audit_path(environ))
    if template == "-":
        raise _UsageError("MCP_CI_AUDIT_LOG is - (standard output): give the files your log collector kept")
    pattern = glob.escape(template).replace(glob.escape("{host}"), "*")
    found = {
        Path(name)
        for name in [*glob.glob(pattern), *glob.glob(pattern + ".*"), *glob.glob(pattern + "-*")]
        if not name.endswith(".torn")
    }
    if not found:
        raise _UsageError(f"no audit file matches {template} (set MCP_CI_AUDIT_LOG or name the files)")
    return sorted(found)


def _time(text: str) -> datetime:
    relative = _RELATIVE.fullmatch(text.strip())
    if relative:
        amount, unit = relative.groups()
        return datetime.now(UTC) - timedelta(**{_UNITS[unit]: int(amount)})
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither an ISO 8601 time (2026-12-02, 2026-12-02T18:00Z) nor an age (30m, 12h, 7d)"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# verify ----------------------------------------------------------------------------------------------------


def _verify(_: argparse.Namespace, paths: list[Path], out: TextIO) -> int:
    verdict = verify(paths)
    print(_summary(verdict), file=out)
    for problem in verdict.problems:
        print(f"  problem: {problem}", file=out)
    for note in verdict.notes:
        print(f"  note: {note}", file=out)
    return 0 if verdict.whole else 1


def _summary(verdict: Verdict) -> str:
    chains = ", ".join(f"{path.name} seq {first}-{last}" for path, first, last in verdict.chains) or "none"
    counts = f"{verdict.files} file(s), {verdict.records} record(s), chains: {chains}"
    notes = f"; {len(verdict.notes)} note(s)" if verdict.notes else ""
    if verdict.whole:
        return f"audit verify: whole: {counts}{notes}"
    first = verdict.problems[0]
    return f"audit verify: NOT WHOLE: {first} ({len(verdict.problems)} problem(s); {counts}{notes})"


# show and stats --------------------------------------------------------------------------------------------


def _matching(args: argparse.Namespace, paths: list[Path]) -> list[Call]:
    return calls(paths, where=lambda call: _matches(call, args))


def _matches(call: Call, args: argparse.Namespace) -> bool:
    record = call.record
    if args.token:
        wanted = args.token.removeprefix("sha256:")
        token = call.token.removeprefix("sha256:")
        if not (token.startswith(wanted) or str(record.get("token_sha256", "")).startswith(wanted)):
            return False
    for name in ("project", "build", "job"):
        wanted = getattr(args, name)
        if wanted and wanted not in _ids_about(record, name):
            return False
    if args.tool and call.tool not in args.tool:
        return False
    if args.outcome and call.outcome not in args.outcome:
        return False
    if args.since and call.ts < args.since:
        return False
    return not (args.until and call.ts > args.until)


def _ids_about(record: dict[str, Any], name: str) -> set[str]:
    detail = record.get("detail")
    created = [value for key, value in detail.items() if name in key] if isinstance(detail, dict) else []
    return {str(value) for value in (record.get(f"{name}_id"), *created) if value}


def _show(args: argparse.Namespace, paths: list[Path], out: TextIO) -> int:
    for call in _matching(args, paths):
        print(json.dumps(_as_json(call), ensure_ascii=False) if args.json else _as_line(call), file=out)
    return 0


def _as_line(call: Call) -> str:
    record = call.record
    verdict = f"{call.decision}/{call.outcome}"
    if record.get("reason"):
        verdict += f" ({record['reason']})"
    parts = [_ts(call.ts), call.token, f"{call.tool:<17}", call.target or "-", verdict]
    if record.get("http_status") is not None and not call.orphan:
        parts.append(f"HTTP {record['http_status']}")
    if record.get("duration_ms") is not None and not call.orphan:
        parts.append(f"{record['duration_ms']:.0f} ms")
    if record.get("confirmation"):
        parts.append(f"confirmation={record['confirmation']}")
    if call.orphan:
        parts.append("NO RESULT: the server stopped mid-call; the outcome is unknown")
    return "  ".join(parts)


def _as_json(call: Call) -> dict[str, Any]:
    keep = (
        "token",
        "token_sha256",
        "tool",
        "request_id",
        "decision",
        "reason",
        "project_id",
        "build_id",
        "job_id",
        "http_status",
        "duration_ms",
        "confirmation",
        "trace_id",
        "detail",
    )
    shown = {"ts": _ts(call.ts), **{key: call.record[key] for key in keep if key in call.record}}
    shown["outcome"] = call.outcome
    shown["orphan"] = call.orphan
    if call.attempt is not None:
        shown["attempt_ts"] = call.attempt.get("ts")
    shown["file"], shown["line"] = str(call.path), call.line
    return shown


def _ts(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _stats(args: argparse.Namespace, paths: list[Path], out: TextIO) -> int:
    found = _matching(args, paths)
    by_tool: dict[str, Counter[str]] = {}
    by_token: dict[str, Counter[str]] = {}
    reasons: Counter[str] = Counter()
    for call in found:
        for table, key in ((by_tool, call.tool), (by_token, call.token)):
            counts = table.setdefault(key, Counter())
            counts["calls"] += 1
            counts[call.decision] += 1
            if call.decision == "allowed":  # a denied call's outcome is "denied" too: count it once
                counts[call.outcome] += 1
            if call.attempt is not None:
                counts["sent"] += 1
        if call.decision == "denied":
            reasons[str(call.record.get("reason") or "unknown")] += 1
    if args.json:
        summary = {
            "calls": len(found),
            "by_tool": {key: dict(value) for key, value in sorted(by_tool.items())},
            "by_token": {key: dict(value) for key, value in sorted(by_token.items())},
            "denied_by_reason": dict(reasons.most_common()),
        }
        print(json.dumps(summary), file=out)
        return 0
    sent = sum(counts["sent"] for counts in by_tool.values())
    orphans = sum(counts["no_result"] for counts in by_tool.values())
    denied = sum(reasons.values())
    print(
        f"{len(found)} call(s): {len(found) - denied} allowed, {denied} denied; {sent} trigger(s) sent, "
        f"{orphans} without result",
        file=out,
    )
    columns = ("calls", "allowed", "denied", "sent", *_OUTCOMES[:3], "no_result")
    for title, table in (("tool", by_tool), ("token", by_token)):
        print(file=out)
        print(f"{title:<22}" + "".join(f"{name:>10}" for name in columns), file=out)
        for key, counts in sorted(table.items()):
            print(f"{key:<22}" + "".join(f"{counts[name]:>10}" for name in columns), file=out)
    if reasons:
        print(file=out)
        print(
            "denied by reason: " + ", ".join(f"{reason} {count}" for reason, count in reasons.most_common()),
            file=out,
        )
    return 0
