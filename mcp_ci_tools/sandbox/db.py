"""SQLite schema and queries of the sandbox, shaped after InfraBox's PostgreSQL tables.

Times are stored as epoch seconds (REAL) taken from the injected clock and rendered as ISO 8601 (UTC) on the
wire. Every write runs in `transaction()`: the process-wide lock plus `BEGIN IMMEDIATE`, so concurrent
writers (requests and the scheduler) are serialised instead of racing or failing with "database is locked".
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "ACTIVE_STATES",
    "JOB_STATES",
    "JOB_TYPES",
    "TERMINAL_STATES",
    "add_collaborator",
    "connect",
    "fetch_build",
    "fetch_builds",
    "hash_token",
    "init_schema",
    "insert_build",
    "insert_job",
    "insert_project",
    "insert_testrun",
    "insert_token",
    "insert_user",
    "is_empty",
    "iso",
    "job_dict",
    "refresh_build",
    "transaction",
]

ACTIVE_STATES = ("queued", "scheduled", "running")
TERMINAL_STATES = ("finished", "failure", "error", "skipped", "killed", "unstable")
JOB_STATES = ACTIVE_STATES + TERMINAL_STATES
JOB_TYPES = ("create_job_matrix", "run_project_container", "run_docker_compose", "wait")

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS "user" (
    id TEXT PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    email TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS project (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL,
    public INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS collaborator (
    user_id TEXT NOT NULL REFERENCES "user"(id),
    project_id TEXT NOT NULL REFERENCES project(id),
    role TEXT NOT NULL DEFAULT 'Developer',
    PRIMARY KEY (user_id, project_id)
);
CREATE TABLE IF NOT EXISTS build (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES project(id),
    build_number INTEGER NOT NULL,
    restart_counter INTEGER NOT NULL DEFAULT 0,
    commit_id TEXT,
    branch TEXT,
    created_at REAL NOT NULL,
    finished_at REAL,
    UNIQUE (project_id, build_number, restart_counter)
);
CREATE TABLE IF NOT EXISTS job (
    id TEXT PRIMARY KEY,
    build_id TEXT NOT NULL REFERENCES build(id),
    project_id TEXT NOT NULL REFERENCES project(id),
    name TEXT NOT NULL,
    type TEXT NOT NULL CHECK (type IN {JOB_TYPES!r}),
    state TEXT NOT NULL DEFAULT 'queued' CHECK (state IN {JOB_STATES!r}),
    dependencies TEXT NOT NULL DEFAULT '[]',
    restarted INTEGER NOT NULL DEFAULT 0,
    message TEXT,
    console TEXT NOT NULL DEFAULT '',
    log_cursor INTEGER NOT NULL DEFAULT 0,
    stats TEXT,
    definition TEXT NOT NULL DEFAULT '{{}}',
    created_at REAL NOT NULL,
    start_date REAL,
    end_date REAL
);
CREATE INDEX IF NOT EXISTS job_build_idx ON job (build_id);
CREATE INDEX IF NOT EXISTS job_state_idx ON job (state);
CREATE TABLE IF NOT EXISTS abort (
    id INTEGER PRIMARY KEY,
    job_id TEXT NOT NULL REFERENCES job(id),
    user_id TEXT NOT NULL REFERENCES "user"(id),
    created_at REAL NOT NULL,
    processed_at REAL
);
CREATE TABLE IF NOT EXISTS testrun (
    id INTEGER PRIMARY KEY,
    job_id TEXT NOT NULL REFERENCES job(id),
    project_id TEXT NOT NULL REFERENCES project(id),
    state TEXT NOT NULL,
    name TEXT NOT NULL,
    suite TEXT NOT NULL,
    duration INTEGER NOT NULL DEFAULT 0,
    message TEXT,
    stack TEXT,
    timestamp REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS mcp_token (
    token_id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES "user"(id),
    name TEXT NOT NULL DEFAULT '',
    token_hash TEXT NOT NULL UNIQUE,
    enabled_projects TEXT NOT NULL DEFAULT '{{}}',
    allow_trigger INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    expires_at REAL,
    revoked_at REAL
);
CREATE TABLE IF NOT EXISTS mcp_access_log (
    id INTEGER PRIMARY KEY,
    token_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    project_id TEXT,
    status TEXT NOT NULL CHECK (status IN ('attempt', 'success', 'forbidden', 'failure')),
    http_status INTEGER,
    message TEXT,
    created_at REAL NOT NULL
);
"""


def connect(db_path: str) -> sqlite3.Connection:
    """Open a connection in autocommit mode; writes open their own transaction with `transaction()`."""
    conn = sqlite3.connect(db_path, timeout=30.0, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def init_schema(conn: sqlite3.Connection) -> None:
    conn.execute("PRAGMA journal_mode = WAL")
    conn.executescript(_SCHEMA)


def is_empty(conn: sqlite3.Connection) -> bool:
    empty: int = conn.execute("SELECT NOT EXISTS (SELECT 1 FROM project)").fetchone()[0]
    return empty == 1


@contextmanager
def transaction(conn: sqlite3.Connection, lock: threading.Lock) -> Iterator[sqlite3.Connection]:
    """One write transaction: committed on success, rolled back on any exception (which propagates)."""
    with lock:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def iso(epoch: float | None) -> str | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC).isoformat()


def insert_user(conn: sqlite3.Connection, *, user_id: str, username: str, name: str, email: str) -> None:
    conn.execute(
        'INSERT INTO "user" (id, username, name, email) VALUES (?, ?, ?, ?)', (user_id, username, name, email)
    )


def insert_project(
    conn: sqlite3.Connection, *, project_id: str, name: str, type: str = "github", public: bool = False
) -> None:
    conn.execute(
        "INSERT INTO project (id, name, type, public) VALUES (?, ?, ?, ?)", (project_id, name, type, public)
    )


def add_collaborator(
    conn: sqlite3.Connection, *, user_id: str, project_id: str, role: str = "Developer"
) -> None:
    conn.execute(
        "INSERT INTO collaborator (user_id, project_id, role) VALUES (?, ?, ?)", (user_id, project_id, role)
    )


def insert_token(
    conn: sqlite3.Connection,
    *,
    token: str,
    user_id: str,
    created_at: float,
    name: str = "",
    enabled_projects: Mapping[str, str | None] | None = None,
    allow_trigger: bool = False,
    expires_at: float | None = None,
    revoked_at: float | None = None,
) -> str:
    """Store a token as upstream does (its id and its sha256, never the token); return the token id."""
    token_id = token[len("ib_mcp_") :][:16]
    conn.execute(
        "INSERT INTO mcp_token (token_id, user_id, name, token_hash, enabled_projects, allow_trigger,"
        " created_at, expires_at, revoked_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            token_id,
            user_id,
            name,
            hash_token(token),
            json.dumps(dict(enabled_projects or {})),
            allow_trigger,
            created_at,
            expires_at,
            revoked_at,
        ),
    )
    return token_id


def insert_build(
    conn: sqlite3.Connection,
    *,
    project_id: str,
    build_number: int,
    created_at: float,
    build_id: str | None = None,
    restart_counter: int = 0,
    commit_id: str | None = None,
    branch: str | None = None,
) -> str:
    build_id = build_id or str(uuid.uuid4())
    conn.execute(
        "INSERT INTO build (id, project_id, build_number, restart_counter, commit_id, branch, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (build_id, project_id, build_number, restart_counter, commit_id, branch, created_at),
    )
    return build_id


def insert_job(
    conn: sqlite3.Connection,
    *,
    build_id: str,
    project_id: str,
    name: str,
    created_at: float,
    job_id: str | None = None,
    type: str = "run_project_container",
    state: str = "queued",
    dependencies: Sequence[Mapping[str, Any]] = (),
    restarted: bool = False,
    message: str | None = None,
    console: str = "",
    definition: Mapping[str, Any] | None = None,
    stats: Mapping[str, Any] | None = None,
    start_date: float | None = None,
    end_date: float | None = None,
    log_cursor: int = 0,
) -> str:
    """Insert a job; `log_cursor` counts the definition's log lines already in `console`."""
    job_id = job_id or str(uuid.uuid4())
    conn.execute(
        "INSERT INTO job (id, build_id, project_id, name, type, state, dependencies, restarted, message,"
        " console, log_cursor, stats, definition, created_at, start_date, end_date)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            job_id,
            build_id,
            project_id,
            name,
            type,
            state,
            json.dumps(list(dependencies)),
            restarted,
            message,
            console,
            log_cursor,
            None if stats is None else json.dumps(dict(stats)),
            json.dumps(dict(definition or {})),
            created_at,
            start_date,
            end_date,
        ),
    )
    return job_id


def insert_testrun(
    conn: sqlite3.Connection,
    *,
    job_id: str,
    project_id: str,
    timestamp: float,
    state: str,
    name: str,
    suite: str,
    duration: int = 0,
    message: str | None = None,
    stack: str | None = None,
) -> None:
    conn.execute(
        "INSERT INTO testrun (job_id, project_id, state, name, suite, duration, message, stack, timestamp)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (job_id, project_id, state, name, suite, duration, message, stack, timestamp),
    )


def refresh_build(conn: sqlite3.Connection, build_id: str) -> None:
    """Keep `build.finished_at` in step with its current (not restarted) jobs."""
    conn.execute(
        """
        UPDATE build SET finished_at = (
            SELECT CASE WHEN COUNT(*) > 0 AND SUM(state IN ('queued', 'scheduled', 'running')) = 0
                        THEN MAX(end_date) END
            FROM job WHERE build_id = build.id AND restarted = 0
        ) WHERE id = ?
        """,
        (build_id,),
    )


_BUILD_SELECT = """
SELECT b.id, b.build_number, b.restart_counter, b.project_id, b.commit_id, b.branch,
       b.created_at, b.finished_at,
       COUNT(j.id) AS n_jobs,
       SUM(j.state IN ('queued', 'scheduled', 'running')) AS n_active,
       SUM(j.state = 'failure') AS n_failure,
       SUM(j.state = 'error') AS n_error,
       SUM(j.state = 'killed') AS n_killed,
       SUM(j.state = 'unstable') AS n_unstable
FROM build b
LEFT JOIN job j ON j.build_id = b.id AND j.restarted = 0
"""


def _build_status(row: sqlite3.Row) -> str | None:
    # Upstream's precedence; restarted originals are ignored because their clones now stand for them.
    if not row["n_jobs"]:
        return None
    for state, column in (
        ("running", "n_active"),
        ("failure", "n_failure"),
        ("error", "n_error"),
        ("killed", "n_killed"),
        ("unstable", "n_unstable"),
    ):
        if row[column]:
            return state
    return "finished"


def _build_dict(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "build_number": row["build_number"],
        "restart_counter": row["restart_counter"],
        "project_id": row["project_id"],
        "commit_id": row["commit_id"],
        "branch": row["branch"],
        "created_at": iso(row["created_at"]),
        "finished_at": iso(row["finished_at"]),
        "status": _build_status(row),
    }


def fetch_build(conn: sqlite3.Connection, project_id: str, build_id: str) -> dict[str, Any] | None:
    row: sqlite3.Row | None = conn.execute(
        _BUILD_SELECT + " WHERE b.id = ? AND b.project_id = ? GROUP BY b.id", (build_id, project_id)
    ).fetchone()
    return None if row is None else _build_dict(row)


def fetch_builds(conn: sqlite3.Connection, project_id: str) -> list[dict[str, Any]]:
    rows: list[sqlite3.Row] = conn.execute(
        _BUILD_SELECT
        + " WHERE b.project_id = ? GROUP BY b.id ORDER BY b.build_number DESC, b.restart_counter DESC",
        (project_id,),
    ).fetchall()
    return [_build_dict(row) for row in rows]


def job_dict(row: sqlite3.Row) -> dict[str, Any]:
    """The #621 job object: no type, restarted or dependencies."""
    return {
        "id": row["id"],
        "name": row["name"],
        "state": row["state"],
        "build_id": row["build_id"],
        "project_id": row["project_id"],
        "start_date": iso(row["start_date"]),
        "end_date": iso(row["end_date"]),
        "message": row["message"],
    }
