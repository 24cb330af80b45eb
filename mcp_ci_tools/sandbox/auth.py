"""Who is calling and what they may do: token check (401), per-user rate limits (429), project scope (403).

Unlike upstream, only the exact `Authorization: Bearer ib_mcp_<48 lowercase hex>` form is accepted (any other
spelling is a 401, never a bypass), membership of the project is checked as well as the token's scope, and a
limited call is a real 429 with `Retry-After`.
"""

from __future__ import annotations

import json
import math
import re
import sqlite3
import threading
import uuid
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from starlette.exceptions import HTTPException

from mcp_ci_tools.sandbox import db

__all__ = [
    "BUCKET_LIMITS",
    "FORBIDDEN_PROJECT",
    "FORBIDDEN_TRIGGER",
    "RATE_LIMITED",
    "RateLimiter",
    "Token",
    "authenticate",
    "check_project",
    "visible_projects",
]

FORBIDDEN_PROJECT: Final = "access to this project is not permitted for the current MCP token"
FORBIDDEN_TRIGGER: Final = "this MCP token does not have trigger permission"
RATE_LIMITED: Final = "rate limit exceeded, please slow down"

BUCKET_LIMITS: Final[Mapping[str, int]] = {
    "trigger_build": 5,
    "list_projects": 30,
    "list_builds": 30,
    "list_jobs": 30,
    "get_job_log": 10,
}

_TOKEN = re.compile(r"ib_mcp_[0-9a-f]{48}")
_WINDOW_S = 60.0


@dataclass(frozen=True)
class Token:
    """A valid token, as the request pipeline sees it (never the token string itself)."""

    token_id: str
    user_id: str
    username: str
    enabled_projects: Mapping[str, str | None]
    allow_trigger: bool


def authenticate(conn: sqlite3.Connection, authorization: list[str], now: float) -> Token:
    """Check the `Authorization` header values of a request; raise a 401 unless it carries a usable token."""
    if len(authorization) != 1 or not authorization[0].startswith("Bearer "):
        raise HTTPException(401, "Unauthorized")
    raw = authorization[0][len("Bearer ") :]
    if not _TOKEN.fullmatch(raw):
        raise HTTPException(401, "invalid MCP token format")
    row: sqlite3.Row | None = conn.execute(
        'SELECT t.*, u.username FROM mcp_token t JOIN "user" u ON u.id = t.user_id WHERE t.token_hash = ?',
        (db.hash_token(raw),),
    ).fetchone()
    if row is None:
        raise HTTPException(401, "invalid or unknown MCP token")
    if row["revoked_at"] is not None and row["revoked_at"] <= now:
        raise HTTPException(401, "MCP token has been revoked")
    if row["expires_at"] is not None and row["expires_at"] <= now:
        raise HTTPException(401, "MCP token has expired")
    return Token(
        token_id=row["token_id"],
        user_id=row["user_id"],
        username=row["username"],
        enabled_projects=_enabled(row["enabled_projects"]),
        allow_trigger=bool(row["allow_trigger"]),
    )


def _enabled(text: str) -> dict[str, str | None]:
    enabled: dict[str, str | None] = {}
    for key, expiry in json.loads(text or "{}").items():
        try:
            enabled[str(uuid.UUID(key))] = expiry
        except ValueError:
            continue
    return enabled


def _scope_allows(token: Token, project_id: str, now: float) -> bool:
    if not token.enabled_projects:
        return True
    if project_id not in token.enabled_projects:
        return False
    expiry = token.enabled_projects[project_id]
    if expiry is None:
        return True
    try:
        until = datetime.fromisoformat(expiry)
    except (TypeError, ValueError):
        return False  # a malformed expiry is treated as expired, as upstream does
    if until.tzinfo is None:
        until = until.replace(tzinfo=UTC)
    return until.timestamp() > now


def check_project(conn: sqlite3.Connection, token: Token, project_id: str, now: float) -> None:
    """403 unless the token's scope names the project (or is `{}`) and its owner collaborates on it."""
    member: sqlite3.Row | None = conn.execute(
        "SELECT 1 FROM collaborator WHERE user_id = ? AND project_id = ?", (token.user_id, project_id)
    ).fetchone()
    if member is None or not _scope_allows(token, project_id, now):
        raise HTTPException(403, FORBIDDEN_PROJECT)


def visible_projects(conn: sqlite3.Connection, token: Token, now: float) -> list[sqlite3.Row]:
    rows: list[sqlite3.Row] = conn.execute(
        "SELECT p.id, p.name, p.type, p.public FROM project p"
        " JOIN collaborator c ON c.project_id = p.id AND c.user_id = ? ORDER BY p.name",
        (token.user_id,),
    ).fetchall()
    return [row for row in rows if _scope_allows(token, row["id"], now)]


class RateLimiter:
    """Sliding 60 s windows per (user, bucket). Every hit is recorded, refused ones too, as upstream does."""

    def __init__(self, limits: Mapping[str, int] = BUCKET_LIMITS, window_s: float = _WINDOW_S) -> None:
        self._limits = dict(limits)
        self._window_s = window_s
        self._hits: dict[tuple[str, str], deque[float]] = {}
        self._lock = threading.Lock()

    def hit(self, user_id: str, bucket: str, now: float) -> int | None:
        """Record one call; return None when it is allowed, else the seconds to wait (for `Retry-After`)."""
        limit = self._limits[bucket]
        with self._lock:
            hits = self._hits.setdefault((user_id, bucket), deque())
            while hits and hits[0] <= now - self._window_s:
                hits.popleft()
            hits.append(now)
            if len(hits) <= limit:
                return None
            # the next call is allowed once all but limit - 1 of the recorded hits have left the window
            frees_at = hits[len(hits) - limit] + self._window_s
            return max(1, math.ceil(frees_at - now))
