"""Concurrent writes are serialised: parallel restarts of one job make exactly one clone set, parallel
restarts of one build get distinct counters, and nothing answers 500 (upstream does both wrong)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import anyio
import httpx
import pytest

from mcp_ci_tools.sandbox import SANDBOX_TOKENS, SEED, ops

from .conftest import API, Sandbox, bearer

P = f"/projects/{SEED.payments}"


def in_parallel(count: int, call: Callable[[int], Any]) -> list[Any]:
    """Run `call(0)` … `call(count - 1)` from `count` threads released at the same moment."""
    barrier = threading.Barrier(count)

    def run(index: int) -> Any:
        barrier.wait()
        return call(index)

    with ThreadPoolExecutor(count) as pool:
        futures = [pool.submit(run, index) for index in range(count)]
        return [future.result() for future in futures]


@pytest.fixture
def hold_at_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hold each write between reading the state and acting on it until five have arrived (or 0.5 s passed).

    Without serialisation the five parallel requests would all pass their checks before any of them acts;
    with it, only the first reaches this point while the others wait for its transaction, so it goes on
    after the timeout and the others find the barrier already broken.
    """
    barrier = threading.Barrier(5)

    def held(original: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any) -> Any:
            result = original(*args)
            with contextlib.suppress(threading.BrokenBarrierError):
                barrier.wait(timeout=0.5)
            return result

        return wrapper

    monkeypatch.setattr(ops, "_check_clonable", held(ops._check_clonable))
    monkeypatch.setattr(ops, "_require_build", held(ops._require_build))


@pytest.mark.usefixtures("hold_at_checks")
def test_parallel_restarts_of_one_job_make_exactly_one_clone_set(sandbox: Sandbox) -> None:
    responses = in_parallel(5, lambda _: sandbox.post(f"{P}/jobs/{SEED.failed_test_job}/restart"))

    assert sorted(response.status_code for response in responses) == [200, 400, 400, 400, 400]
    assert {response.json()["message"] for response in responses if response.status_code == 400} == {
        "job has already been restarted"
    }
    assert sorted(sandbox.jobs(SEED.failed_build)) == [
        "Create Jobs",
        "build",
        "deploy",
        "deploy.1",
        "test",
        "test.1",
    ]


@pytest.mark.usefixtures("hold_at_checks")
def test_parallel_restarts_of_one_build_each_get_their_own_restart_counter(sandbox: Sandbox) -> None:
    responses = in_parallel(5, lambda _: sandbox.post(f"{P}/builds/{SEED.failed_build}/restart"))

    assert [response.status_code for response in responses] == [200] * 5
    assert sorted(response.json()["restart_counter"] for response in responses) == [1, 2, 3, 4, 5]
    rows = sandbox.rows("SELECT restart_counter FROM build WHERE build_number = 42 ORDER BY restart_counter")
    assert [row["restart_counter"] for row in rows] == [0, 1, 2, 3, 4, 5]


def test_restarts_racing_the_scheduler_neither_fail_nor_duplicate(sandbox: Sandbox) -> None:
    def restart_or_step(index: int) -> int | None:
        if index % 2:
            sandbox.scheduler.step()
            return None
        return sandbox.post(f"{P}/jobs/{SEED.unstable_test_job}/restart").status_code

    statuses = [status for status in in_parallel(10, restart_or_step) if status is not None]

    assert sorted(statuses) == [200, 400, 400, 400, 400]
    names = sorted(sandbox.jobs(SEED.unstable_build))
    assert names == ["Create Jobs", "build", "deploy", "deploy.1", "test", "test.1"]


@pytest.mark.anyio
async def test_parallel_reruns_as_anyio_tasks_make_exactly_one_clone(sandbox: Sandbox) -> None:
    statuses: list[int] = []
    transport = httpx.ASGITransport(app=sandbox.app)
    headers = bearer(SANDBOX_TOKENS["trigger"].token)

    async with httpx.AsyncClient(transport=transport, base_url="http://sandbox") as client:

        async def rerun() -> None:
            response = await client.post(f"{API}{P}/jobs/{SEED.unstable_test_job}/rerun", headers=headers)
            statuses.append(response.status_code)

        async with anyio.create_task_group() as tasks:
            for _ in range(5):
                tasks.start_soon(rerun)

    assert sorted(statuses) == [200, 400, 400, 400, 400]
    assert sorted(sandbox.jobs(SEED.unstable_build)) == ["Create Jobs", "build", "deploy", "test", "test.1"]
