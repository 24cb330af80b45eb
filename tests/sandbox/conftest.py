"""Fixtures for the sandbox: a seeded app over a temporary SQLite file, its TestClient, a fake clock that only
moves when a test says so, and the scheduler stepped by hand."""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from mcp_ci_tools.sandbox import SANDBOX_TOKENS, SEED, Scheduler, create_app, db

API = "/api/v1/mcp"
START = 1_800_000_000.0


class FakeClock:
    """Epoch seconds that only move on `advance()`."""

    def __init__(self, start: float = START) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class Job:
    """A job to put into a test build: its state, its parents and how it will end when run."""

    name: str
    state: str = "queued"
    needs: Sequence[tuple[str, Sequence[str]]] = ()
    type: str = "run_project_container"
    definition: dict[str, Any] = field(default_factory=dict)
    restarted: bool = False


@dataclass
class Sandbox:
    app: Starlette
    client: TestClient
    clock: FakeClock
    db_path: str

    @property
    def scheduler(self) -> Scheduler:
        scheduler: Scheduler = self.app.state.scheduler
        return scheduler

    def request(self, method: str, path: str, role: str = "trigger", **kwargs: Any) -> httpx2.Response:
        headers = kwargs.pop("headers", None)
        if headers is None:
            headers = bearer(kwargs.pop("token", None) or SANDBOX_TOKENS[role].token)
        return self.client.request(method, API + path, headers=headers, **kwargs)

    def get(self, path: str, role: str = "trigger", **kwargs: Any) -> httpx2.Response:
        return self.request("GET", path, role, **kwargs)

    def post(self, path: str, role: str = "trigger", **kwargs: Any) -> httpx2.Response:
        return self.request("POST", path, role, **kwargs)

    def delete(self, path: str, role: str = "trigger", **kwargs: Any) -> httpx2.Response:
        return self.request("DELETE", path, role, **kwargs)

    def rows(self, sql: str, *params: Any) -> list[dict[str, Any]]:
        with closing(db.connect(self.db_path)) as conn:
            return [dict(row) for row in conn.execute(sql, params).fetchall()]

    def jobs(self, build_id: str) -> dict[str, dict[str, Any]]:
        """The build's jobs by name, straight from the table (with type, restarted and dependencies)."""
        rows = self.rows("SELECT * FROM job WHERE build_id = ?", build_id)
        return {row["name"]: {**row, "dependencies": json.loads(row["dependencies"])} for row in rows}

    def user_id(self, username: str) -> str:
        user_id: str = self.rows('SELECT id FROM "user" WHERE username = ?', username)[0]["id"]
        return user_id

    def add_token(self, username: str = "alice", **grant: Any) -> str:
        token = "ib_mcp_" + secrets.token_hex(24)
        with closing(db.connect(self.db_path)) as conn:
            db.insert_token(
                conn, token=token, user_id=self.user_id(username), created_at=self.clock(), **grant
            )
        return token

    def add_build(
        self, jobs: Sequence[Job], *, project_id: str = SEED.payments, with_seed: bool = True
    ) -> tuple[str, dict[str, str]]:
        """A new build holding `jobs` and a finished seed whose matrix they are; return its id and job ids."""
        now = self.clock()
        with closing(db.connect(self.db_path)) as conn:
            number = conn.execute(
                "SELECT COALESCE(MAX(build_number), 0) + 1 FROM build WHERE project_id = ?", (project_id,)
            ).fetchone()[0]
            build_id = db.insert_build(
                conn,
                project_id=project_id,
                build_number=number,
                created_at=now,
                commit_id="c0ffee",
                branch="main",
            )
            ids = {job.name: str(uuid.uuid4()) for job in jobs}
            if with_seed:
                matrix = [
                    {
                        "name": job.name,
                        "type": job.type,
                        "definition": job.definition,
                        "dependencies": [{"job": parent, "on": list(on)} for parent, on in job.needs],
                    }
                    for job in jobs
                ]
                db.insert_job(
                    conn,
                    build_id=build_id,
                    project_id=project_id,
                    name="Create Jobs",
                    type="create_job_matrix",
                    state="finished",
                    created_at=now,
                    definition={"jobs": matrix},
                )
            for job in jobs:
                db.insert_job(
                    conn,
                    job_id=ids[job.name],
                    build_id=build_id,
                    project_id=project_id,
                    name=job.name,
                    type=job.type,
                    state=job.state,
                    restarted=job.restarted,
                    dependencies=[
                        {"job": parent, "job-id": ids[parent], "on": list(on)} for parent, on in job.needs
                    ],
                    created_at=now,
                    start_date=now if job.state in ("running", *db.TERMINAL_STATES) else None,
                    end_date=now if job.state in db.TERMINAL_STATES else None,
                    definition=job.definition,
                )
            db.refresh_build(conn, build_id)
        return build_id, ids


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def fake_clock() -> FakeClock:
    return FakeClock()


def open_sandbox(tmp_path: Path, clock: FakeClock, **options: Any) -> Iterator[Sandbox]:
    db_path = str(tmp_path / "sandbox.sqlite3")
    app = create_app(db_path, **{"clock": clock, "job_duration_s": 0, "run_scheduler": False, **options})
    with TestClient(app) as client:
        yield Sandbox(app=app, client=client, clock=clock, db_path=db_path)


@pytest.fixture
def sandbox(tmp_path: Path, fake_clock: FakeClock) -> Iterator[Sandbox]:
    """The seeded sandbox; its scheduler only moves when the test steps it, jobs take 0 s."""
    yield from open_sandbox(tmp_path, fake_clock)
