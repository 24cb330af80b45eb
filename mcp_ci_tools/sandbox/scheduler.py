"""The sandbox's scheduler: keeps the CI alive by moving jobs forward on the injected clock.

One `step()` applies, in one transaction:
1. pending `abort` rows: queued, scheduled and running jobs become `killed` ("Aborted by <user>");
2. running jobs print their log lines as time passes and end, once their duration is over, as their
   definition says (finished, failure, error or unstable with test results); a seed job (`Create Jobs`)
   that ends creates its build's job matrix;
3. scheduled jobs start running;
4. queued jobs whose parents have all ended are scheduled, or skipped when a dependency's `on` condition
   is not met; restarted originals still queued are skipped, their clones run instead.
So each job moves at most one state per step. Tests call `step()` / `run_until_idle()` with a fake clock;
the app steps once at start-up, then runs `run_forever()` in its lifespan.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from contextlib import closing
from typing import Any

from starlette.concurrency import run_in_threadpool

from mcp_ci_tools.sandbox import _jobdef, db

__all__ = ["Scheduler"]

_log = logging.getLogger(__name__)


class Scheduler:
    """Advances every job of the sandbox database one transition per `step()`."""

    def __init__(
        self,
        db_path: str,
        *,
        clock: Callable[[], float] = time.time,
        job_duration_s: float = 2.0,
        lock: threading.Lock | None = None,
    ) -> None:
        self._db_path = db_path
        self._clock = clock
        self._duration_s = job_duration_s
        self._lock = lock or threading.Lock()

    def step(self) -> int:
        """Advance all state once; return how many jobs changed state."""
        now = self._clock()
        touched: set[str] = set()
        with closing(db.connect(self._db_path)) as conn, db.transaction(conn, self._lock):
            moved = self._apply_aborts(conn, now, touched)
            # taken before any job moves, so that no job moves twice and new jobs wait for the next step
            scheduled: list[str] = [
                row[0] for row in conn.execute("SELECT id FROM job WHERE state = 'scheduled'")
            ]
            queued: list[sqlite3.Row] = conn.execute(
                "SELECT * FROM job WHERE state = 'queued' ORDER BY created_at"
            ).fetchall()
            moved += self._advance_running(conn, now, touched)
            moved += self._start_scheduled(conn, now, scheduled, touched)
            moved += self._schedule_queued(conn, now, queued, touched)
            for build_id in touched:
                db.refresh_build(conn, build_id)
        return moved

    tick = step

    def run_until_idle(self, max_steps: int = 1000) -> int:
        """Step until nothing moves at the current clock time; return the number of steps that moved."""
        for steps in range(max_steps):
            if self.step() == 0:
                return steps
        raise RuntimeError(f"sandbox scheduler still moving after {max_steps} steps")

    async def run_forever(
        self, interval_s: float, *, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    ) -> None:
        """Step every `interval_s` until cancelled; a failing step is logged (stderr) and the loop goes on."""
        while True:
            await sleep(interval_s)
            try:
                await run_in_threadpool(self.step)
            except Exception:
                _log.exception("sandbox scheduler step failed")

    def _apply_aborts(self, conn: sqlite3.Connection, now: float, touched: set[str]) -> int:
        rows: list[sqlite3.Row] = conn.execute(
            'SELECT a.id, a.job_id, u.username FROM abort a JOIN "user" u ON u.id = a.user_id'
            " WHERE a.processed_at IS NULL ORDER BY a.id"
        ).fetchall()
        moved = 0
        for row in rows:
            killed: sqlite3.Row | None = conn.execute(
                "UPDATE job SET state = 'killed', end_date = ?, message = ?, console = console || ?"
                " WHERE id = ? AND state IN ('queued', 'scheduled', 'running') RETURNING build_id",
                (now, f"Aborted by {row['username']}", f"Job aborted by {row['username']}\n", row["job_id"]),
            ).fetchone()
            if killed is not None:
                moved += 1
                touched.add(killed["build_id"])
            conn.execute("UPDATE abort SET processed_at = ? WHERE id = ?", (now, row["id"]))
        return moved

    def _advance_running(self, conn: sqlite3.Connection, now: float, touched: set[str]) -> int:
        moved = 0
        running: list[sqlite3.Row] = conn.execute("SELECT * FROM job WHERE state = 'running'").fetchall()
        for job in running:
            definition = _jobdef.load(job["definition"])
            duration = _jobdef.duration_s(definition, self._duration_s)
            lines: list[str] = definition.get("log", [])
            elapsed = now - (job["start_date"] if job["start_date"] is not None else now)
            done = elapsed >= duration
            upto = len(lines) if done else max(job["log_cursor"], int(len(lines) * elapsed / duration))
            printed = "".join(line + "\n" for line in lines[job["log_cursor"] : upto])
            if done:
                self._finish(conn, job, definition, now, printed)
                touched.add(job["build_id"])
                moved += 1
            elif printed:
                conn.execute(
                    "UPDATE job SET console = console || ?, log_cursor = ? WHERE id = ?",
                    (printed, upto, job["id"]),
                )
        return moved

    def _finish(
        self, conn: sqlite3.Connection, job: sqlite3.Row, definition: dict[str, Any], now: float, printed: str
    ) -> None:
        outcome = _jobdef.outcome(definition)
        if job["type"] == "create_job_matrix" and outcome == "finished":
            printed += self._create_jobs(conn, job, definition, now)
        for test in definition.get("testruns", []):
            db.insert_testrun(
                conn,
                job_id=job["id"],
                project_id=job["project_id"],
                timestamp=now,
                state=test.get("state", "ok"),
                name=test["name"],
                suite=test.get("suite", ""),
                duration=int(test.get("duration", 0)),
                message=test.get("message"),
                stack=test.get("stack"),
            )
        stats = definition.get("stats")
        conn.execute(
            "UPDATE job SET state = ?, end_date = ?, message = ?, console = console || ?, log_cursor = ?,"
            " stats = COALESCE(?, stats) WHERE id = ?",
            (
                outcome,
                now,
                None if outcome == "finished" else definition.get("message"),
                printed + _jobdef.final_line(definition) + "\n",
                len(definition.get("log", [])),
                None if stats is None else json.dumps(stats),
                job["id"],
            ),
        )

    def _create_jobs(
        self, conn: sqlite3.Connection, seed: sqlite3.Row, definition: dict[str, Any], now: float
    ) -> str:
        restarted_build: int = conn.execute(
            "SELECT restart_counter > 0 FROM build WHERE id = ?", (seed["build_id"],)
        ).fetchone()[0]
        templates: list[dict[str, Any]] = definition.get("jobs", [])
        ids = {template["name"]: str(uuid.uuid4()) for template in templates}
        for template in templates:
            job_definition = template.get("definition", {})
            db.insert_job(
                conn,
                job_id=ids[template["name"]],
                build_id=seed["build_id"],
                project_id=seed["project_id"],
                name=template["name"],
                type=template.get("type", "run_project_container"),
                dependencies=[
                    {"job": dep["job"], "job-id": ids[dep["job"]], "on": dep.get("on", ["finished"])}
                    for dep in template.get("dependencies", [])
                    if dep["job"] in ids
                ],
                created_at=now,
                definition=_jobdef.retried(job_definition) if restarted_build else job_definition,
            )
        return _jobdef.matrix_log(list(ids))

    def _start_scheduled(
        self, conn: sqlite3.Connection, now: float, ids: list[str], touched: set[str]
    ) -> int:
        for job_id in ids:
            build_id: str = conn.execute(
                "UPDATE job SET state = 'running', start_date = ?,"
                " console = console || 'Starting job ' || name || char(10)"
                " WHERE id = ? RETURNING build_id",
                (now, job_id),
            ).fetchone()[0]
            touched.add(build_id)
        return len(ids)

    def _schedule_queued(
        self, conn: sqlite3.Connection, now: float, queued: list[sqlite3.Row], touched: set[str]
    ) -> int:
        moved = 0
        for job in queued:
            verdict = self._verdict(conn, job)
            if verdict is None:
                continue
            state, message = verdict
            conn.execute(
                "UPDATE job SET state = ?, message = ?, end_date = ? WHERE id = ?",
                (state, message, now if state == "skipped" else None, job["id"]),
            )
            touched.add(job["build_id"])
            moved += 1
        return moved

    @staticmethod
    def _verdict(conn: sqlite3.Connection, job: sqlite3.Row) -> tuple[str, str | None] | None:
        """('scheduled', None), ('skipped', why), or None while a parent is still active."""
        if job["restarted"]:
            return "skipped", "superseded by its restarted clone"
        unmet: list[str] = []
        for dep in json.loads(job["dependencies"]):
            parent: sqlite3.Row | None = conn.execute(
                "SELECT state FROM job WHERE id = ?", (dep.get("job-id"),)
            ).fetchone()
            if parent is None:
                unmet.append(f"{dep.get('job')} does not exist")
            elif parent["state"] in db.ACTIVE_STATES:
                return None
            elif parent["state"] not in dep.get("on", ["finished"]):
                unmet.append(f"{dep.get('job')} ended in state {parent['state']}")
        if unmet:
            return "skipped", "dependency not met: " + "; ".join(unmet)
        return "scheduled", None
