"""The Connection's options for MCP's conventions: a cancelled request gets no answer at all,
and a request of ours that is given up is announced as `notifications/cancelled {requestId}`."""

from typing import Any

import anyio
import pytest
from test_connection import connected

from convmgr.jsonrpc.connection import Work

pytestmark = pytest.mark.anyio

MCP = {"answer_cancelled": False, "cancel_form": ("notifications/cancelled", "requestId")}


def holding(started: anyio.Event) -> Any:
    """A method whose work runs until cancelled."""

    def hold(params: Any) -> Work:
        async def run() -> Any:
            started.set()
            await anyio.sleep_forever()

        return Work(run)

    return hold


async def test_a_cancelled_request_is_not_answered() -> None:
    started = anyio.Event()
    methods = {"hold": holding(started), "ping": lambda params: {}}
    async with connected(methods, **MCP) as (conn, peer):
        await peer.request("h", "hold")
        await started.wait()
        conn.cancel("h")
        await conn.wait_idle()  # "h" has ended
        # The next answer is the ping's: nothing was written for "h".
        assert (await peer.result("p", "ping"))["result"] == {}


async def test_a_batch_does_not_wait_for_its_cancelled_request() -> None:
    started = anyio.Event()
    methods = {"hold": holding(started), "ping": lambda params: {}}
    async with connected(methods, **MCP) as (conn, peer):
        await peer.send(
            [
                {"jsonrpc": "2.0", "id": "h", "method": "hold"},
                {"jsonrpc": "2.0", "id": "p", "method": "ping"},
            ]
        )
        await started.wait()
        conn.cancel("h")
        assert await peer.read() == [{"jsonrpc": "2.0", "id": "p", "result": {}}]


async def test_a_request_of_ours_given_up_is_announced_the_dialects_way() -> None:
    async with connected({"ping": lambda params: {}}, **MCP) as (conn, peer):
        async with anyio.create_task_group() as tg:
            scope = anyio.CancelScope()

            async def ask() -> None:
                with scope:
                    await conn.request("elicitation/create", {"message": "?"})

            tg.start_soon(ask)
            request = await peer.read()
            scope.cancel()
        assert await peer.read() == {
            "jsonrpc": "2.0",
            "method": "notifications/cancelled",
            "params": {"requestId": request["id"]},
        }
