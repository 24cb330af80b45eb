"""Seeding the sandbox: the demo CI of `_catalogue` as rows, and the fixed tokens that open it.

Tokens are deterministic (`sandbox_token(role)`) so a user can paste them into config; only their sha256 is
stored, as upstream does.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from mcp_ci_tools.sandbox import _jobdef, db
from mcp_ci_tools.sandbox._catalogue import (
    BUILDS,
    MEMBERS,
    PROJECTS,
    SEED,
    USERS,
    SeedBuild,
    SeedIds,
    SeedJob,
    uid,
)

__all__ = ["SANDBOX_TOKENS", "SEED", "SandboxToken", "SeedIds", "populate", "sandbox_token"]


def sandbox_token(role: str) -> str:
    """The sandbox's deterministic token for `role` (only ever valid against the sandbox)."""
    return "ib_mcp_" + hashlib.sha256(f"mcp-ci-tools sandbox {role}".encode()).hexdigest()[:48]


@dataclass(frozen=True)
class SandboxToken:
    role: str
    token: str
    user: str
    description: str


@dataclass(frozen=True)
class _Grant:
    user: str
    description: str
    enabled_projects: dict[str, str | None] = field(default_factory=dict)
    allow_trigger: bool = True
    expires_in_s: float | None = None
    revoked: bool = False


_GRANTS = {
    "trigger": _Grant("alice", "alice: may restart, rerun and abort in her projects (payments, frontend)"),
    "read_only": _Grant("bob", "bob: read-only, every write answers 403", allow_trigger=False),
    "single_project": _Grant(
        "carol", "carol: may trigger, payments-service only", enabled_projects={SEED.payments: None}
    ),
    "expired": _Grant("alice", "alice: expired yesterday, every call answers 401", expires_in_s=-86400),
    "revoked": _Grant("alice", "alice: revoked, every call answers 401", revoked=True),
}

SANDBOX_TOKENS: Mapping[str, SandboxToken] = MappingProxyType(
    {
        role: SandboxToken(
            role=role, token=sandbox_token(role), user=grant.user, description=grant.description
        )
        for role, grant in _GRANTS.items()
    }
)


_RUNNING_FOR_S = 3600.0  # seeded running jobs stay running this long, so they can be aborted in a demo


def _job_id(build_id: str, n: int) -> str:
    return uid("c1000000", int(build_id.rsplit("-", 1)[1]) * 100 + n)


def _seed_build(conn: sqlite3.Connection, build: SeedBuild, now: float) -> None:
    created = now - build.age_s
    db.insert_build(
        conn,
        project_id=build.project_id,
        build_id=build.build_id,
        build_number=build.number,
        commit_id=build.commit,
        branch=build.branch,
        created_at=created,
        restart_counter=build.restart_counter,
    )
    matrix = {
        "jobs": [
            {
                "name": job.name,
                "type": job.type,
                "definition": job.definition,
                "dependencies": [{"job": parent, "on": list(on)} for parent, on in job.needs],
            }
            for job in build.jobs
            if not job.clone
        ]
    }
    db.insert_job(
        conn,
        job_id=_job_id(build.build_id, 1),
        build_id=build.build_id,
        project_id=build.project_id,
        name="Create Jobs",
        type="create_job_matrix",
        state="finished",
        created_at=created,
        start_date=created,
        end_date=created + 3,
        console="Starting job Create Jobs\n"
        + _jobdef.matrix_log([job.name for job in build.jobs if not job.clone])
        + "Job finished successfully\n",
        definition=matrix,
    )
    ends: dict[str, float] = {}
    for job in build.jobs:
        start = max([ends[parent] for parent, _ in job.needs] or [created + 3]) + 2
        ends[job.name] = start + job.took
        _insert_seeded(conn, build, job, created, start)
    db.refresh_build(conn, build.build_id)


def _insert_seeded(
    conn: sqlite3.Connection, build: SeedBuild, job: SeedJob, created: float, start: float
) -> None:
    """Insert a job as the scheduler would have left it in its state, `start` being when it started."""
    by_name = {other.name: other for other in build.jobs}
    definition = job.definition
    fields: dict[str, Any] = {
        "build_id": build.build_id,
        "project_id": build.project_id,
        "job_id": _job_id(build.build_id, job.n),
        "name": job.name,
        "type": job.type,
        "state": job.state,
        "restarted": job.restarted,
        "created_at": created,
        "dependencies": [
            {"job": parent, "job-id": _job_id(build.build_id, by_name[parent].n), "on": list(on)}
            for parent, on in job.needs
        ],
    }
    if job.state == "skipped":
        unmet = [
            f"{parent} ended in state {by_name[parent].state}"
            for parent, on in job.needs
            if by_name[parent].state not in on
        ]
        fields |= {"end_date": start, "message": "dependency not met: " + "; ".join(unmet)}
    elif job.state == "running":
        shown = max(1, len(definition.get("log", [])) * 2 // 3)
        definition = {**definition, "duration_s": _RUNNING_FOR_S}
        lines = [f"Starting job {job.name}", *definition.get("log", [])[:shown]]
        fields |= {
            "start_date": start,
            "console": "".join(line + "\n" for line in lines),
            "log_cursor": shown,
        }
    elif job.state != "queued":
        fields |= {
            "start_date": start,
            "end_date": start + job.took,
            "console": _jobdef.console_for(job.name, definition),
            "message": definition.get("message"),
            "stats": definition.get("stats"),
            "log_cursor": len(definition.get("log", [])),
        }
    db.insert_job(conn, definition=definition, **fields)
    if job.state in db.TERMINAL_STATES and job.state != "skipped":
        for test in definition.get("testruns", []):
            db.insert_testrun(
                conn, job_id=fields["job_id"], project_id=build.project_id, timestamp=start + job.took, **test
            )


def populate(conn: sqlite3.Connection, now: float) -> None:
    """Insert the demo data (into an empty database), in one transaction."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        for username, (user_id, name) in USERS.items():
            db.insert_user(
                conn, user_id=user_id, username=username, name=name, email=f"{username}@sandbox.local"
            )
        for project_id, name, kind, public in PROJECTS:
            db.insert_project(conn, project_id=project_id, name=name, type=kind, public=public)
            for member in MEMBERS[project_id]:
                db.add_collaborator(conn, user_id=USERS[member][0], project_id=project_id)
        for role, grant in _GRANTS.items():
            db.insert_token(
                conn,
                token=sandbox_token(role),
                user_id=USERS[grant.user][0],
                name=f"sandbox {role}",
                enabled_projects=grant.enabled_projects,
                allow_trigger=grant.allow_trigger,
                created_at=now - 7 * 86400,
                expires_at=None if grant.expires_in_s is None else now + grant.expires_in_s,
                revoked_at=now - 3600 if grant.revoked else None,
            )
        for build in BUILDS:
            _seed_build(conn, build, now)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
