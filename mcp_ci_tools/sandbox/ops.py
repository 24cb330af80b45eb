"""What each `/api/v1/mcp` endpoint does once the caller is authenticated, within its limits and in scope.

Every operation takes a `Call` and returns the JSON body of its 200 answer, or raises `HTTPException` (404 for
anything unknown in the project, 400 when the job's state does not allow the write). Each write is one
transaction: its checks and its inserts see the same state, so two concurrent restarts cannot both pass.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from starlette.exceptions import HTTPException

from mcp_ci_tools.sandbox import _jobdef, auth, db

__all__ = [
    "Call",
    "abort_build",
    "abort_job",
    "get_build",
    "get_job",
    "get_job_log",
    "get_job_stats",
    "get_job_testruns",
    "get_project",
    "list_builds",
    "list_jobs",
    "list_projects",
    "rerun_job",
    "restart_build",
    "restart_job",
]

_RESTART_STATES = ("error", "failure", "finished", "killed", "unstable")
_RESTART_TYPES = ("run_project_container", "run_docker_compose")


@dataclass(frozen=True)
class Call:
    """One authorised request: its connection, time, caller and canonical ids."""

    conn: sqlite3.Connection
    lock: threading.Lock
    now: float
    token: auth.Token
    project_id: str = ""
    build_id: str = ""
    job_id: str = ""
    query: Mapping[str, str] = field(default_factory=dict)
    archived_logs: bool = False


def _not_found() -> HTTPException:
    return HTTPException(404)


def _refused(message: str) -> HTTPException:
    return HTTPException(400, message)


def _project_dict(row: sqlite3.Row) -> dict[str, Any]:
    return {"id": row["id"], "name": row["name"], "type": row["type"], "public": bool(row["public"])}


def _job_row(call: Call) -> sqlite3.Row:
    row: sqlite3.Row | None = call.conn.execute(
        "SELECT * FROM job WHERE id = ? AND project_id = ?", (call.job_id, call.project_id)
    ).fetchone()
    if row is None:
        raise _not_found()
    return row


def _require_build(call: Call) -> dict[str, Any]:
    build = db.fetch_build(call.conn, call.project_id, call.build_id)
    if build is None:
        raise _not_found()
    return build


def list_projects(call: Call) -> list[dict[str, Any]]:
    return [_project_dict(row) for row in auth.visible_projects(call.conn, call.token, call.now)]


def get_project(call: Call) -> dict[str, Any]:
    row: sqlite3.Row | None = call.conn.execute(
        "SELECT * FROM project WHERE id = ?", (call.project_id,)
    ).fetchone()
    if row is None:
        raise _not_found()
    return _project_dict(row)


def _int_param(query: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    text = query.get(name)
    if text is None:
        return default
    try:
        return min(high, max(low, int(text)))
    except ValueError:
        raise _refused(f"{name} must be an integer") from None


def list_builds(call: Call) -> list[dict[str, Any]]:
    get_project(call)
    limit = _int_param(call.query, "limit", 50, 1, 50)
    offset = _int_param(call.query, "offset", 0, 0, 1_000_000)
    builds = db.fetch_builds(call.conn, call.project_id)
    if "branch" in call.query:
        builds = [build for build in builds if build["branch"] == call.query["branch"]]
    if "status" in call.query:
        builds = [build for build in builds if build["status"] == call.query["status"]]
    return builds[offset : offset + limit]


def get_build(call: Call) -> dict[str, Any]:
    return _require_build(call)


def list_jobs(call: Call) -> list[dict[str, Any]]:
    _require_build(call)
    rows: list[sqlite3.Row] = call.conn.execute(
        "SELECT * FROM job WHERE build_id = ? AND project_id = ? ORDER BY name, created_at",
        (call.build_id, call.project_id),
    ).fetchall()
    return [db.job_dict(row) for row in rows]


def get_job(call: Call) -> dict[str, Any]:
    return db.job_dict(_job_row(call))


def get_job_log(call: Call) -> str:
    row = _job_row(call)
    if call.archived_logs and row["state"] in db.TERMINAL_STATES:
        return ""  # upstream #621: the console of a finished job has moved to the archive
    return str(row["console"])


def get_job_testruns(call: Call) -> list[dict[str, Any]]:
    _job_row(call)
    rows: list[sqlite3.Row] = call.conn.execute(
        "SELECT state, name, suite, duration, message, stack,"
        " strftime('%Y-%m-%d %H:%M:%S', timestamp, 'unixepoch') AS timestamp"
        " FROM testrun WHERE job_id = ? AND project_id = ? ORDER BY suite, name",
        (call.job_id, call.project_id),
    ).fetchall()
    return [dict(row) for row in rows]


def get_job_stats(call: Call) -> dict[str, Any]:
    stats = json.loads(_job_row(call)["stats"] or "{}")
    return stats if isinstance(stats, dict) else {}


def restart_build(call: Call) -> dict[str, Any]:
    with db.transaction(call.conn, call.lock) as conn:
        build = _require_build(call)
        seed: sqlite3.Row | None = conn.execute(
            "SELECT * FROM job WHERE build_id = ? AND type = 'create_job_matrix'"
            " ORDER BY restarted, created_at LIMIT 1",
            (call.build_id,),
        ).fetchone()
        if seed is None:
            raise _refused("build has no Create Jobs seed job and cannot be restarted")
        counter: int = conn.execute(
            "SELECT MAX(restart_counter) + 1 FROM build WHERE project_id = ? AND build_number = ?",
            (call.project_id, build["build_number"]),
        ).fetchone()[0]
        new_build = db.insert_build(
            conn,
            project_id=call.project_id,
            build_number=build["build_number"],
            restart_counter=counter,
            commit_id=build["commit_id"],
            branch=build["branch"],
            created_at=call.now,
        )
        db.insert_job(
            conn,
            build_id=new_build,
            project_id=call.project_id,
            name=seed["name"],
            type="create_job_matrix",
            created_at=call.now,
            console=f"Build restarted by {call.token.username}\n",
            definition=_jobdef.load(seed["definition"]),
        )
    return {"build_id": new_build, "restart_counter": counter}


def _insert_aborts(conn: sqlite3.Connection, call: Call, job_ids: list[str]) -> None:
    conn.executemany(
        "INSERT INTO abort (job_id, user_id, created_at) VALUES (?, ?, ?)",
        [(job_id, call.token.user_id, call.now) for job_id in job_ids],
    )


def abort_build(call: Call) -> dict[str, Any]:
    with db.transaction(call.conn, call.lock) as conn:
        _require_build(call)
        job_ids = [row[0] for row in conn.execute("SELECT id FROM job WHERE build_id = ?", (call.build_id,))]
        _insert_aborts(conn, call, job_ids)
    return {"message": "Aborted all jobs", "jobs_aborted": len(job_ids)}


def abort_job(call: Call) -> dict[str, Any]:
    with db.transaction(call.conn, call.lock) as conn:
        _insert_aborts(conn, call, [_job_row(call)["id"]])
    return {"message": "Successfully aborted job"}


def _check_clonable(job: sqlite3.Row, verb: str) -> None:
    if job["type"] not in _RESTART_TYPES:
        raise _refused(f"job type cannot be {verb}")
    if job["state"] not in _RESTART_STATES:
        raise _refused(f"job in state {job['state']} cannot be {verb}")
    if job["restarted"]:
        raise _refused("job has already been restarted")


def _clone(conn: sqlite3.Connection, call: Call, jobs: list[sqlite3.Row]) -> list[str]:
    """Mark `jobs` restarted and insert queued clones, rewiring dependencies among them; return new ids."""
    new_ids = {job["id"]: str(uuid.uuid4()) for job in jobs}
    new_names = {job["id"]: _jobdef.clone_name(job["name"]) for job in jobs}
    for job in jobs:
        conn.execute("UPDATE job SET restarted = 1 WHERE id = ?", (job["id"],))
        dependencies = [
            {**dep, "job": new_names[dep["job-id"]], "job-id": new_ids[dep["job-id"]]}
            if dep.get("job-id") in new_ids
            else dep
            for dep in json.loads(job["dependencies"])
        ]
        db.insert_job(
            conn,
            job_id=new_ids[job["id"]],
            build_id=job["build_id"],
            project_id=job["project_id"],
            name=new_names[job["id"]],
            type=job["type"],
            dependencies=dependencies,
            created_at=call.now,
            console=f"Job restarted by {call.token.username}\n",
            definition=_jobdef.retried(_jobdef.load(job["definition"])),
        )
    db.refresh_build(conn, jobs[0]["build_id"])
    return [new_ids[job["id"]] for job in jobs]


def _downstream(job: sqlite3.Row, build_jobs: list[sqlite3.Row]) -> list[sqlite3.Row]:
    """The job and every current job depending on it, transitively (restarted ones are history)."""
    closure = [job]
    ids = {job["id"]}
    grew = True
    while grew:
        grew = False
        for other in build_jobs:
            if other["id"] in ids or other["restarted"]:
                continue
            if any(dep.get("job-id") in ids for dep in json.loads(other["dependencies"])):
                closure.append(other)
                ids.add(other["id"])
                grew = True
    return closure


def restart_job(call: Call) -> dict[str, Any]:
    with db.transaction(call.conn, call.lock) as conn:
        job = _job_row(call)
        _check_clonable(job, "restarted")
        build_jobs: list[sqlite3.Row] = conn.execute(
            "SELECT * FROM job WHERE build_id = ?", (job["build_id"],)
        ).fetchall()
        closure = _downstream(job, build_jobs)
        if any(other["state"] not in (*db.TERMINAL_STATES, "queued") for other in closure[1:]):
            raise _refused("some dependent jobs are still running")
        _clone(conn, call, closure)
    return {"message": "Successfully restarted job", "jobs_restarted": len(closure)}


def rerun_job(call: Call) -> dict[str, Any]:
    with db.transaction(call.conn, call.lock) as conn:
        job = _job_row(call)
        _check_clonable(job, "rerun")
        parent_ids = [dep.get("job-id") for dep in json.loads(job["dependencies"])]
        for parent_id in parent_ids:
            parent: sqlite3.Row | None = conn.execute(
                "SELECT state FROM job WHERE id = ?", (parent_id,)
            ).fetchone()
            if parent is not None and parent["state"] in db.ACTIVE_STATES:
                raise _refused("parent job is still running")
        [new_id] = _clone(conn, call, [job])
    return {"message": "Successfully rerun job", "new_job_id": new_id}
