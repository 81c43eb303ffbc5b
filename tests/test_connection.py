"""convmgr.jsonrpc on its own, in memory: Work and ordering, cancellation, errors, the
server's requests to the client, and each python-lsp-jsonrpc quirk endpoint.py lists.

A Connection runs on one end of a memory pipe with a small method table of the
test's own; the test is the client on the other end, reading and writing raw
ndjson. Nothing here knows of conversations.
"""

import errno
import json
import logging
import os
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest

from convmgr.jsonrpc.codes import ErrorCode
from convmgr.jsonrpc.connection import Connection, Work
from convmgr.jsonrpc.errors import ClientGone, RpcError
from convmgr.jsonrpc.stdio import StdioStream
from convmgr.jsonrpc.transport import MemoryByteStream, memory_pipe

pytestmark = pytest.mark.anyio

Message = dict[str, Any]


class Peer:
    """The client end: raw ndjson messages, no checks but JSON itself."""

    def __init__(self, stream: MemoryByteStream) -> None:
        self.stream = stream
        self._buf = bytearray()
        self._messages: list[Any] = []

    async def send(self, obj: Any) -> None:
        await self.stream.send(json.dumps(obj).encode() + b"\n")

    async def request(self, msg_id: Any, method: str, params: Any = None) -> None:
        msg: Message = {"jsonrpc": "2.0", "id": msg_id, "method": method}
        if params is not None:
            msg["params"] = params
        await self.send(msg)

    async def read(self) -> Any:
        """The next message the connection wrote (a hang guard fails the test)."""
        with anyio.fail_after(10):
            while not self._messages:
                data = await self.stream.receive()
                assert data, "the connection closed its output"
                self._buf += data
                *lines, rest = self._buf.split(b"\n")
                self._buf = bytearray(rest)
                self._messages.extend(json.loads(line) for line in lines if line)
        return self._messages.pop(0)

    async def answers(self, count: int) -> list[Message]:
        """The next `count` messages."""
        return [await self.read() for _ in range(count)]

    async def result(self, msg_id: Any, method: str, params: Any = None) -> Any:
        """A request's whole response (nothing else may come first)."""
        await self.request(msg_id, method, params)
        response = await self.read()
        assert response["id"] == msg_id, response
        return response


@asynccontextmanager
async def connected(
    methods: dict[str, Callable[[Any], Any]],
    notifications: dict[str, Callable[[Any], None]] | None = None,
    **options: Any,
) -> AsyncIterator[tuple[Connection, Peer]]:
    """A Connection with these handlers (and options), reading until the peer closes its output."""
    server_end, client_end = memory_pipe()
    conn = Connection(server_end, **options)
    for name, handler in methods.items():
        conn.method(name, handler)
    for name, handler in (notifications or {}).items():
        conn.notification(name, handler)
    with server_end, client_end:
        async with anyio.create_task_group() as tg:
            tg.start_soon(conn.outbound.run)
            tg.start_soon(conn.read_loop, tg)
            yield conn, Peer(client_end)
            client_end.close_output()
            with anyio.fail_after(10):
                await conn.wait_idle()
            tg.cancel_scope.cancel()


def error_of(response: Message) -> tuple[int, str]:
    assert set(response) == {"jsonrpc", "id", "error"}, response
    return response["error"]["code"], response["error"]["message"]


# --- Work: inline or in a task, ordered by key ------------------------------------------


async def test_work_on_idle_keys_runs_inline_in_the_reader_task() -> None:
    tasks: dict[str, int] = {}

    def handler(params: Any) -> Work:
        tasks["handler"] = anyio.get_current_task().id

        def run() -> Any:
            tasks["run"] = anyio.get_current_task().id
            return params

        return Work(run, ("a",))

    async with connected({"m": handler}) as (_, peer):
        assert (await peer.result(1, "m", {"x": 1}))["result"] == {"x": 1}
    # No task of its own: the work ran where the reader called the handler.
    assert tasks["run"] == tasks["handler"]


async def test_work_waits_for_earlier_work_on_its_keys_only() -> None:
    gate = anyio.Event()
    ran: list[str] = []

    def slow(params: Any) -> Work:
        async def run() -> Any:
            await gate.wait()
            ran.append("slow")
            return "slow"

        return Work(run, ("a",))

    def quick(params: Any) -> Work:
        def run() -> Any:
            ran.append(params["name"])
            return params["name"]

        return Work(run, (params["key"],))

    async with connected({"slow": slow, "quick": quick}) as (_, peer):
        await peer.request(1, "slow")
        await peer.request(2, "quick", {"key": "a", "name": "behind"})
        # Another key does not wait; nor does a request without keys.
        assert (await peer.result(3, "quick", {"key": "b", "name": "other"}))["result"] == "other"
        assert ran == ["other"]
        gate.set()
        first, second = await peer.answers(2)
        assert (first["id"], first["result"]) == (1, "slow")
        assert (second["id"], second["result"]) == (2, "behind")
        assert ran == ["other", "slow", "behind"]


async def test_awaitable_work_on_idle_keys_still_holds_them() -> None:
    gate = anyio.Event()

    def handler(params: Any) -> Work:
        async def wait() -> Any:
            await gate.wait()
            return "waited"

        # run() itself is plain: what it returns is awaitable only this time.
        return Work(lambda: wait() if params["wait"] else "now", ("k",))

    async with connected({"m": handler}) as (_, peer):
        await peer.request(1, "m", {"wait": True})
        await peer.request(2, "m", {"wait": False})
        await peer.request(3, "ping-less")
        (not_found,) = await peer.answers(1)
        assert not_found["id"] == 3 and not_found["error"]["code"] == ErrorCode.METHOD_NOT_FOUND
        gate.set()
        assert [m["result"] for m in await peer.answers(2)] == ["waited", "now"]


async def test_the_answer_is_queued_before_the_next_work_on_the_key_starts() -> None:
    """What 'response before events' rests on: the holder's answer, then the next holder."""
    gate = anyio.Event()

    def create(params: Any) -> Work:
        async def run() -> Any:
            await gate.wait()
            return "created"

        return Work(run, ("c",))

    def follow(params: Any) -> Work:
        def run() -> Any:
            conn.outbound.send({"jsonrpc": "2.0", "method": "event", "params": {}})
            return "followed"

        return Work(run, ("c",))

    async with connected({"create": create, "follow": follow}) as (conn, peer):
        await peer.request(1, "create")
        await peer.request(2, "follow")
        gate.set()
        messages = await peer.answers(3)
        assert [m.get("id", m.get("method")) for m in messages] == [1, "event", 2]


async def test_a_method_called_as_a_notification_runs_unanswered(
    caplog: pytest.LogCaptureFixture,
) -> None:
    done = anyio.Event()

    def handler(params: Any) -> Work:
        async def run() -> Any:
            done.set()
            if params.get("fail"):
                raise RpcError(-1, "it failed")
            return "never sent"

        return Work(run, ("a",))

    async with connected({"m": handler}) as (conn, peer):
        await peer.send({"jsonrpc": "2.0", "method": "m", "params": {}})
        await peer.send({"jsonrpc": "2.0", "method": "m", "params": {"fail": True}})
        await done.wait()
        await conn.wait_idle()
        await peer.request(1, "m", {})
        assert (await peer.read())["id"] == 1  # nothing came before it
    assert "notification m failed: it failed" in caplog.text


# --- cancellation ---------------------------------------------------------------------------


async def test_cancel_running_and_queued_work_answers_request_cancelled() -> None:
    started = anyio.Event()
    ran: list[Any] = []

    def hold(params: Any) -> Work:
        async def run() -> Any:
            started.set()
            await anyio.sleep_forever()

        return Work(run, ("a",))

    def queued(params: Any) -> Work:
        return Work(lambda: ran.append(params), ("a",))

    methods = {"hold": hold, "queued": queued, "ping": lambda params: {}}
    async with connected(methods) as (conn, peer):
        await peer.request("h", "hold")
        await peer.request("q", "queued", {"x": 1})
        await peer.result("p", "ping")  # "q" has been read and is waiting by now
        await started.wait()
        conn.cancel("q")
        conn.cancel(12345)  # unknown: ignored
        conn.cancel([1])  # type: ignore[arg-type]  # not an id: ignored
        assert error_of(await peer.read()) == (ErrorCode.REQUEST_CANCELLED, "request cancelled")
        conn.cancel("h")
        response = await peer.read()
        assert response["id"] == "h"
        assert error_of(response)[0] == ErrorCode.REQUEST_CANCELLED
        # The queued work never ran, and the key is free again.
        assert (await peer.result("after", "queued", {"y": 2}))["result"] is None
        assert ran == [{"y": 2}]


async def test_pylsp_quirk_cancel_request_is_the_dialects_and_always_answered() -> None:
    """The Endpoint's $/cancelRequest never answers; here it is only a notification a
    dialect may route to cancel(), and the request answers -32800."""
    started = anyio.Event()

    def hold(params: Any) -> Work:
        async def run() -> Any:
            started.set()
            await anyio.sleep_forever()

        return Work(run)

    async with connected({"hold": hold}) as (conn, peer):
        # No dialect routes it: an unknown notification, ignored.
        await peer.request(1, "hold")
        await started.wait()
        await peer.send({"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": 1}})
        await peer.request(2, "missing")
        assert (await peer.read())["id"] == 2
        conn.notification("$/cancelRequest", lambda params: conn.cancel(params["id"]))
        await peer.send({"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": 1}})
        assert error_of(await peer.read())[0] == ErrorCode.REQUEST_CANCELLED


async def test_work_behind_a_cancelled_request_still_waits_for_the_earlier_work() -> None:
    gate = anyio.Event()

    def hold(params: Any) -> Work:
        async def run() -> Any:
            await gate.wait()
            return "held"

        return Work(run, ("a",))

    def quick(params: Any) -> Work:
        return Work(lambda: params["name"], (params["key"],))

    async with connected({"hold": hold, "quick": quick}) as (conn, peer):
        await peer.request(1, "hold")
        await peer.request(2, "quick", {"key": "a", "name": "cancelled"})
        await peer.request(3, "quick", {"key": "b", "name": "other"})
        assert (await peer.read())["result"] == "other"  # 2 is queued by now
        conn.cancel(2)
        assert error_of(await peer.read())[0] == ErrorCode.REQUEST_CANCELLED
        await peer.request(4, "quick", {"key": "a", "name": "after"})
        assert (await peer.result(5, "quick", {"key": "b", "name": "b again"}))["id"] == 5
        # 4 came in after 5 was read and still has no answer: it waits for 1.
        gate.set()
        assert [(m["id"], m["result"]) for m in await peer.answers(2)] == [
            (1, "held"),
            (4, "after"),
        ]


async def test_everyone_waiting_for_idle_wakes_when_the_last_request_ends() -> None:
    gate = anyio.Event()

    def hold(params: Any) -> Work:
        async def run() -> Any:
            await gate.wait()
            return "done"

        return Work(run)

    async with connected({"hold": hold, "ping": lambda params: {}}) as (conn, peer):
        await peer.request(1, "hold")
        await peer.result(2, "ping")  # "hold" runs by now
        woken: list[int] = []

        async def wait(n: int) -> None:
            await conn.wait_idle()
            woken.append(n)

        async with anyio.create_task_group() as tg:
            tg.start_soon(wait, 1)
            tg.start_soon(wait, 2)
            await anyio.wait_all_tasks_blocked()
            assert woken == []
            gate.set()
        assert sorted(woken) == [1, 2]
        assert (await peer.read())["result"] == "done"


# --- errors ---------------------------------------------------------------------------------


async def test_errors_of_handlers_and_of_their_work(caplog: pytest.LogCaptureFixture) -> None:
    def fails(params: Any) -> Any:
        if params["how"] == "rpc":
            raise RpcError(-32001, "not found", {"id": "x"})
        raise ValueError("secret detail")

    def work_fails(params: Any) -> Work:
        async def run() -> Any:
            raise ValueError("secret detail")

        return Work(run)

    async with connected({"fails": fails, "work": work_fails}) as (conn, peer):
        response = await peer.result(1, "fails", {"how": "rpc"})
        assert response["error"] == {"code": -32001, "message": "not found", "data": {"id": "x"}}
        # pylsp's JsonRpcInternalError says -32602; an internal error is -32603, no detail.
        for msg_id, method in ((2, "fails"), (3, "work")):
            response = await peer.result(msg_id, method, {"how": "bug"})
            assert error_of(response) == (ErrorCode.INTERNAL_ERROR, "internal error")
            assert "secret" not in json.dumps(response)
        # Logged, with the traceback.
        logged = [r for r in caplog.records if r.getMessage() == "internal error"]
        assert [str(r.exc_info[1]) for r in logged if r.exc_info] == ["secret detail"] * 2
        conn.map_errors(lambda exc: RpcError(-32099, f"mapped {type(exc).__name__}"))
        assert error_of(await peer.result(4, "work")) == (-32099, "mapped ValueError")


async def test_pylsp_quirk_dict_results_with_result_or_error_keys_are_not_merged() -> None:
    value = {"result": 1, "error": {"code": 2, "message": "no"}}
    async with connected({"m": lambda params: value}) as (_, peer):
        assert await peer.result(1, "m") == {"jsonrpc": "2.0", "id": 1, "result": value}


async def test_pylsp_quirk_async_work_is_awaited_on_the_event_loop_thread() -> None:
    """pylsp drops an async handler's coroutine and runs callables on its thread pool."""
    threads: list[int] = []

    def handler(params: Any) -> Work:
        async def run() -> Any:
            threads.append(threading.get_ident())
            await anyio.lowlevel.checkpoint()
            return "awaited"

        return Work(run)

    def returns_callable(params: Any) -> Any:
        return lambda: threads.append(-1)

    async with connected({"m": handler, "c": returns_callable}) as (_, peer):
        assert (await peer.result(1, "m"))["result"] == "awaited"
        # A callable is a result like any other (not JSON: an internal error), never run.
        assert error_of(await peer.result(2, "c"))[0] == ErrorCode.INTERNAL_ERROR
    assert threads == [threading.get_ident()]
    assert not [t for t in threading.enumerate() if "ThreadPoolExecutor" in t.name]


# --- the server's requests to the client --------------------------------------------------


async def test_server_request_round_trip(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    async with connected({"ping": lambda params: {}}) as (conn, peer):
        results: dict[str, Any] = {}

        async def ask(name: str, params: Any) -> None:
            try:
                results[name] = await conn.request("tool/call", params)
            except RpcError as exc:
                results[name] = ("error", exc.code, exc.message, exc.data)

        async with anyio.create_task_group() as tg:
            tg.start_soon(ask, "first", {"n": 1})
            first = await peer.read()
            assert first == {
                "jsonrpc": "2.0",
                "id": "s1",
                "method": "tool/call",
                "params": {"n": 1},
            }
            tg.start_soon(ask, "second", {"n": 2})
            assert (await peer.read())["id"] == "s2"
            # Answers come in any order, in either shape.
            await peer.send({"jsonrpc": "2.0", "id": "s2", "error": {"code": 7, "message": "no"}})
            await peer.send({"id": "s1", "result": {"content": []}})
        assert results == {"first": {"content": []}, "second": ("error", 7, "no", None)}

        # A second answer, an answer to an id never sent, and one to a client id:
        # logged and dropped, never fatal.
        await peer.send({"jsonrpc": "2.0", "id": "s1", "result": "again"})
        await peer.send({"jsonrpc": "2.0", "id": "s99", "result": None})
        await peer.send({"jsonrpc": "2.0", "id": 5, "error": {"code": 1, "message": "x"}})
        assert (await peer.result(1, "ping"))["result"] == {}
    for unknown in ("'s1'", "'s99'", "5"):
        assert f"answer to request id {unknown}" in caplog.text


async def test_pylsp_quirk_error_answers_it_cannot_parse_reach_the_caller() -> None:
    """JsonRpcException.from_dict raises on code 0, a missing or empty message, or an
    unknown key: the caller still gets the client's error, and the session goes on."""
    errors = [
        {"code": 0, "message": "zero"},
        {"code": 5},
        {"code": 6, "message": ""},
        {"code": 7, "message": "m", "data": [1], "extra": True},
        {"code": 8, "message": 42},
    ]
    async with connected({"ping": lambda params: {}}) as (conn, peer):
        got: list[Any] = []

        async def ask() -> None:
            with pytest.raises(RpcError) as caught:
                await conn.request("approval/request")
            got.append((caught.value.code, caught.value.message, caught.value.data))

        for error in errors:
            async with anyio.create_task_group() as tg:
                tg.start_soon(ask)
                request = await peer.read()
                assert "params" not in request
                await peer.send({"jsonrpc": "2.0", "id": request["id"], "error": error})
        assert got == [
            (0, "zero", None),
            (5, "", None),
            (6, "", None),
            (7, "m", [1]),
            (8, "", None),
        ]
        assert (await peer.result(1, "ping"))["result"] == {}


async def test_pylsp_quirk_a_request_given_up_on_sends_cancel_and_drops_late_answers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """future.cancel() would raise InvalidStateError in pylsp's own callback and keep the
    id, so that a late answer raised out of consume(); neither happens here."""
    caplog.set_level(logging.WARNING)
    async with connected({"ping": lambda params: {}}) as (conn, peer):
        async with anyio.create_task_group() as tg:
            scope = anyio.CancelScope()

            async def ask() -> None:
                with scope:
                    await conn.request("tool/call", {"slow": True})

            tg.start_soon(ask)
            request = await peer.read()
            scope.cancel()
        assert await peer.read() == {
            "jsonrpc": "2.0",
            "method": "$/cancelRequest",
            "params": {"id": request["id"]},
        }
        await peer.send({"jsonrpc": "2.0", "id": request["id"], "result": "late"})
        assert (await peer.result(1, "ping"))["result"] == {}
    assert f"answer to request id {request['id']!r}" in caplog.text
    assert "InvalidStateError" not in caplog.text and "Traceback" not in caplog.text


async def test_answers_inside_a_batch_resolve_requests_and_get_no_reply() -> None:
    async with connected({"ping": lambda params: {}}) as (conn, peer):
        async with anyio.create_task_group() as tg:
            got: list[Any] = []

            async def ask() -> None:
                got.append(await conn.request("tool/call"))

            tg.start_soon(ask)
            request = await peer.read()
            await peer.send([{"jsonrpc": "2.0", "id": request["id"], "result": 42}])
        assert got == [42]
        assert (await peer.result(1, "ping"))["result"] == {}  # nothing written before it


async def test_once_input_ends_server_requests_fail_with_client_gone() -> None:
    server_end, client_end = memory_pipe()
    conn = Connection(server_end)
    peer = Peer(client_end)
    outcome: list[str] = []
    asked = anyio.Event()

    async def ask() -> None:
        try:
            await conn.request("tool/call")
        except ClientGone:
            outcome.append("gone")
        asked.set()

    with server_end, client_end:
        async with anyio.create_task_group() as tg:
            tg.start_soon(conn.outbound.run)
            tg.start_soon(ask)
            assert (await peer.read())["method"] == "tool/call"
            client_end.close_output()
            await conn.read_loop(tg)
            await asked.wait()
            tg.cancel_scope.cancel()
    assert outcome == ["gone"]
    with pytest.raises(ClientGone):
        await conn.request("approval/request")


# --- transports -------------------------------------------------------------------------------


async def test_stdio_stream_reads_writes_and_reports_a_closed_reader() -> None:
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    for fd in (in_r, out_w):
        os.set_blocking(fd, False)
    stream = StdioStream(in_r, out_w)
    try:
        os.write(in_w, b"abc")
        assert await stream.receive() == b"abc"
        got = bytearray()

        async def drain() -> None:
            while len(got) < 300_000:
                await anyio.wait_readable(out_r)
                got.extend(os.read(out_r, 1 << 16))

        async with anyio.create_task_group() as tg:
            tg.start_soon(drain)
            await stream.send(b"x" * 300_000)  # more than a pipe holds: it waits for room
        assert bytes(got) == b"x" * 300_000
        os.close(in_w)
        assert await stream.receive() == b""
        os.close(out_r)
        with pytest.raises(anyio.BrokenResourceError) as caught:
            await stream.send(b"y")
        assert caught.value.__cause__.errno == errno.EPIPE  # type: ignore[union-attr]
    finally:
        for fd in (in_r, out_w):
            os.close(fd)


async def test_a_reader_that_goes_away_makes_the_outbound_queue_gone() -> None:
    server_end, client_end = memory_pipe()
    conn = Connection(server_end)
    client_end.close_input()
    conn.outbound.send({"jsonrpc": "2.0", "method": "x"})
    with server_end, client_end, anyio.fail_after(10):
        await conn.outbound.run()
    assert conn.outbound.closed and conn.outbound.gone.is_set()
    conn.outbound.send({"jsonrpc": "2.0", "method": "discarded"})
    assert conn.outbound.size == 0
