"""One server, connections one after another: the last to end closes the pool, the next first one reopens it."""

from __future__ import annotations

import pytest
from mcp import Client

from tests.conftest import PROJECT_ID

pytestmark = pytest.mark.anyio

PROJECTS = [{"id": PROJECT_ID, "name": "payments", "type": "upload", "public": False}]


async def test_a_connection_after_the_last_one_ended_reaches_infrabox_again(mode, make_server, infrabox):
    route = infrabox.get("/projects").respond(200, json=PROJECTS)
    server = make_server()

    for _ in range(2):
        async with Client(server, mode=mode) as client:
            result = await client.call_tool("list_projects", {})
            assert not result.is_error
            assert result.structured_content["projects"] == PROJECTS

    assert route.call_count == 2


async def test_overlapping_connections_share_one_open_pool(mode, make_server, infrabox):
    route = infrabox.get("/projects").respond(200, json=PROJECTS)
    server = make_server()

    async with Client(server, mode=mode) as first:
        async with Client(server, mode=mode) as second:
            await second.call_tool("list_projects", {})
        result = await first.call_tool("list_projects", {})

    assert not result.is_error
    assert route.call_count == 2
