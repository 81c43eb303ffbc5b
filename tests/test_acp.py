"""`convmgr acp` end to end, driven by the official Python SDK's ClientSideConnection.

Every message convmgr writes is validated strictly against `acp.schema`
(tests/acp_harness.py). Tool calls are driven offline by echo's `/call` lines.
"""

import json
from pathlib import Path
from typing import Any

import anyio
import pytest
from acp import RequestError, text_block
from acp import schema as s
from acp_harness import FULL_CAPABILITIES, agent, raw_notify, raw_request

pytestmark = pytest.mark.anyio

Message = dict[str, Any]


async def start(conn: Any, cwd: Path, capabilities: Any = FULL_CAPABILITIES) -> str:
    """initialize and session/new, sent back to back as editors do; the session id."""
    init, new = await _both(
        conn.initialize(protocol_version=1, client_capabilities=capabilities),
        conn.new_session(cwd=str(cwd), mcp_servers=[]),
    )
    assert init.protocol_version == 1
    return str(new.session_id)


async def _both(first: Any, second: Any) -> tuple[Any, Any]:
    results: list[Any] = [None, None]

    async def run(n: int, awaitable: Any) -> None:
        results[n] = await awaitable

    async with anyio.create_task_group() as group:
        group.start_soon(run, 0, first)
        group.start_soon(run, 1, second)
    return results[0], results[1]


def statuses(wire: Any, sid: str, call_id: str) -> list[str]:
    """The statuses a tool call went through, in order."""
    return [
        u.get("status", "")
        for u in wire.updates(sid)
        if u.get("toolCallId") == call_id and u["sessionUpdate"].startswith("tool_call")
    ]


async def test_initialize_advertises_what_convmgr_does(tmp_path: Path) -> None:
    async with agent(tmp_path, "--no-store") as (conn, _, _):
        init = await conn.initialize(protocol_version=1)
        caps = init.agent_capabilities
        assert caps.load_session is True
        assert caps.prompt_capabilities.embedded_context is True
        assert caps.prompt_capabilities.image is False
        sessions = caps.session_capabilities
        assert all(
            getattr(sessions, name) is not None
            for name in ("list", "fork", "resume", "close", "delete")
        )
        assert init.agent_info is not None and init.agent_info.name == "convmgr"


async def test_a_later_protocol_version_is_answered_with_1(tmp_path: Path) -> None:
    async with agent(tmp_path, "--no-store") as (conn, _, _):
        assert (await conn.initialize(protocol_version=7)).protocol_version == 1


async def test_new_prompt_load_fork_list_close_delete(tmp_path: Path) -> None:
    store = str(tmp_path / "store.sqlite3")
    text = "hello there,\n  editor of mine"
    async with agent(tmp_path, "--store", store) as (conn, editor, wire):
        sid = await start(conn, tmp_path)
        reply = await conn.prompt(session_id=sid, prompt=[text_block(text)])
        assert reply.stop_reason == "end_turn"
        assert reply.usage is not None and reply.usage.total_tokens > 0
        # Every chunk came before the answer, and together they are the input.
        assert editor.text(sid) == text
        answer = wire.answer_index("session/prompt")
        assert all(
            n < answer for n, m in enumerate(wire.received) if m.get("method") == "session/update"
        )

    async with agent(tmp_path, "--store", store) as (conn, editor, wire):
        await conn.initialize(protocol_version=1, client_capabilities=FULL_CAPABILITIES)
        await conn.load_session(cwd=str(tmp_path), session_id=sid, mcp_servers=[])
        # The history, replayed before the answer.
        replay = wire.updates(sid)
        assert [u["sessionUpdate"] for u in replay] == ["user_message_chunk", "agent_message_chunk"]
        assert replay[0]["content"]["text"] == text and replay[1]["content"]["text"] == text
        loaded = wire.answer_index("session/load")
        assert all(
            n < loaded for n, m in enumerate(wire.received) if m.get("method") == "session/update"
        )

        fork = await conn.fork_session(cwd=str(tmp_path), session_id=sid)
        assert fork.session_id != sid
        reply = await conn.prompt(session_id=fork.session_id, prompt=[text_block("in the fork")])
        assert reply.stop_reason == "end_turn" and editor.text(fork.session_id) == "in the fork"

        listed = await conn.list_sessions()
        by_id = {info.session_id: info for info in listed.sessions}
        assert {sid, fork.session_id} <= by_id.keys()
        assert by_id[sid].cwd == str(tmp_path) and by_id[sid].title == text
        assert (await conn.list_sessions(cwd=str(tmp_path))).sessions
        assert (await conn.list_sessions(cwd="/no/such/dir")).sessions == []

        await conn.close_session(session_id=fork.session_id)
        with pytest.raises(RequestError) as closed:
            await conn.prompt(session_id=fork.session_id, prompt=[text_block("gone")])
        assert closed.value.code == -32002

        assert await raw_request(conn, "session/delete", {"sessionId": sid}) == {}
        with pytest.raises(RequestError) as deleted:
            await conn.load_session(cwd=str(tmp_path), session_id=sid, mcp_servers=[])
        assert deleted.value.code == -32002
        listed = await conn.list_sessions()
        assert sid not in {info.session_id for info in listed.sessions}


async def test_resume_takes_a_stored_session_without_replay(tmp_path: Path) -> None:
    store = str(tmp_path / "store.sqlite3")
    async with agent(tmp_path, "--store", store) as (conn, _, _):
        sid = await start(conn, tmp_path)
        await conn.prompt(session_id=sid, prompt=[text_block("first")])
    async with agent(tmp_path, "--store", store) as (conn, editor, wire):
        await conn.initialize(protocol_version=1)
        await conn.resume_session(cwd=str(tmp_path), session_id=sid)
        assert wire.updates(sid) == []
        reply = await conn.prompt(session_id=sid, prompt=[text_block("second")])
        assert reply.stop_reason == "end_turn" and editor.text(sid) == "second"


async def test_cancel_mid_prompt_answers_cancelled(tmp_path: Path) -> None:
    async with agent(tmp_path, "--no-store") as (conn, editor, wire):
        sid = await start(conn, tmp_path)
        never: anyio.Event = anyio.Event()

        async def hold() -> str:
            await never.wait()
            return "cancelled"

        editor.decide = hold
        call = json.dumps({"path": "f.txt", "content": "x"})
        result: list[Any] = []

        async def prompt() -> None:
            result.append(
                await conn.prompt(session_id=sid, prompt=[text_block(f"/call write_file {call}")])
            )

        async with anyio.create_task_group() as group:
            group.start_soon(prompt)
            await editor.asked.wait()  # the turn is waiting for the user's decision
            await conn.cancel(session_id=sid)
        # The prompt answered while the user's decision was still pending: the cancel
        # reached the turn. How soon is bench/bench_acp.py's to measure, not a test's.
        never.set()
        assert result[0].stop_reason == "cancelled"
        assert editor.writes == []
        # The permission request still open was given up with ACP's own cancel form.
        assert any(m.get("method") == "$/cancel_request" for m in wire.received)
        # The session takes the next prompt.
        reply = await conn.prompt(session_id=sid, prompt=[text_block("again")])
        assert reply.stop_reason == "end_turn"


async def test_write_file_approved_runs_and_rejected_does_not(tmp_path: Path) -> None:
    async with agent(tmp_path, "--no-store") as (conn, editor, wire):
        sid = await start(conn, tmp_path)
        call = json.dumps({"path": "notes.txt", "content": "hello file"})

        editor.decide = lambda: "allow_once"
        reply = await conn.prompt(session_id=sid, prompt=[text_block(f"/call write_file {call}")])
        assert reply.stop_reason == "end_turn"
        assert editor.writes == [(str(tmp_path / "notes.txt"), "hello file")]
        assert statuses(wire, sid, "call_1_1") == ["pending", "in_progress", "completed"]
        started = wire.updates(sid)[0]
        assert started["kind"] == "edit" and started["title"] == "write_file notes.txt"
        assert (tmp_path / "notes.txt").read_text() == "hello file"

        editor.decide = lambda: "reject_once"
        other = json.dumps({"path": "other.txt", "content": "no"})
        reply = await conn.prompt(session_id=sid, prompt=[text_block(f"/call write_file {other}")])
        assert reply.stop_reason == "end_turn"
        assert len(editor.writes) == 1 and not (tmp_path / "other.txt").exists()
        assert statuses(wire, sid, "call_2_1") == ["pending", "failed"]
        assert len(editor.permissions) == 2


async def test_allow_always_is_asked_once(tmp_path: Path) -> None:
    async with agent(tmp_path, "--no-store") as (conn, editor, _):
        sid = await start(conn, tmp_path)
        editor.decide = lambda: "allow_always"
        for n in range(2):
            call = json.dumps({"path": f"f{n}.txt", "content": str(n)})
            await conn.prompt(session_id=sid, prompt=[text_block(f"/call write_file {call}")])
        assert len(editor.writes) == 2 and len(editor.permissions) == 1


async def test_read_file_needs_no_approval(tmp_path: Path) -> None:
    (tmp_path / "three.txt").write_text("one\ntwo\nthree\n")
    async with agent(tmp_path, "--no-store") as (conn, editor, wire):
        sid = await start(conn, tmp_path)
        call = json.dumps({"path": "three.txt", "line": 2, "limit": 1})
        await conn.prompt(session_id=sid, prompt=[text_block(f"/call read_file {call}")])
        assert editor.permissions == []
        assert statuses(wire, sid, "call_1_1") == ["pending", "in_progress", "completed"]
        assert editor.text(sid) == "two\n"


async def test_run_command_goes_through_the_terminal(tmp_path: Path) -> None:
    async with agent(tmp_path, "--no-store") as (conn, editor, wire):
        sid = await start(conn, tmp_path)
        call = json.dumps({"command": "echo", "args": ["from", "a", "terminal"]})
        reply = await conn.prompt(session_id=sid, prompt=[text_block(f"/call run_command {call}")])
        assert reply.stop_reason == "end_turn"
        assert editor.terminal_calls == ["create", "wait_for_exit", "output", "release"]
        done = next(u for u in wire.updates(sid) if u.get("status") == "completed")
        assert done["content"][0]["content"]["text"] == "from a terminal\n\n[exit status 0]"
        assert wire.updates(sid)[0]["kind"] == "execute"


async def test_no_editor_tools_without_the_capabilities(tmp_path: Path) -> None:
    async with agent(tmp_path, "--no-store") as (conn, editor, _):
        sid = await start(conn, tmp_path, s.ClientCapabilities())
        # No tools: echo does not call, it echoes.
        await conn.prompt(session_id=sid, prompt=[text_block('/call write_file {"path": "x"}')])
        assert editor.text(sid) == '/call write_file {"path": "x"}' and editor.permissions == []


async def test_bad_input_is_answered_and_survived(tmp_path: Path) -> None:
    async with agent(tmp_path, "--no-store") as (conn, _, _):
        await conn.initialize(protocol_version=1)
        with pytest.raises(RequestError) as relative:
            await conn.new_session(cwd="relative/dir", mcp_servers=[])
        assert relative.value.code == -32602
        with pytest.raises(RequestError) as unknown:
            await conn.prompt(session_id="no-such-session", prompt=[text_block("hi")])
        assert unknown.value.code == -32002
        with pytest.raises(RequestError) as method:
            await raw_request(conn, "session/set_mode", {"sessionId": "x", "modeId": "y"})
        assert method.value.code == -32601
        with pytest.raises(RequestError) as shape:
            await raw_request(conn, "session/prompt", {"sessionId": 3, "prompt": "hi"})
        assert shape.value.code == -32602 and shape.value.data["reason"] == "invalid_params"
        sid = str((await conn.new_session(cwd=str(tmp_path), mcp_servers=[])).session_id)
        assert (await conn.prompt(session_id=sid, prompt=[text_block("still here")])).stop_reason


async def test_a_prompt_while_one_runs_is_refused_busy(tmp_path: Path) -> None:
    async with agent(tmp_path, "--no-store") as (conn, editor, _):
        sid = await start(conn, tmp_path)
        release = anyio.Event()

        async def hold() -> str:
            await release.wait()
            return "reject_once"

        editor.decide = hold
        results: list[Any] = []

        async def first() -> None:
            prompt = [text_block('/call write_file {"path": "a", "content": "b"}')]
            results.append(await conn.prompt(session_id=sid, prompt=prompt))

        async with anyio.create_task_group() as group:
            group.start_soon(first)
            await editor.asked.wait()
            with pytest.raises(RequestError) as busy:
                await conn.prompt(session_id=sid, prompt=[text_block("me too")])
            assert busy.value.code == -32600 and busy.value.data["reason"] == "busy"
            release.set()
        assert results[0].stop_reason == "end_turn"


async def test_cancel_request_cancels_a_prompt(tmp_path: Path) -> None:
    async with agent(tmp_path, "--no-store") as (conn, editor, wire):
        sid = await start(conn, tmp_path)
        never = anyio.Event()

        async def hold() -> str:
            await never.wait()
            return "cancelled"

        editor.decide = hold
        errors: list[RequestError] = []

        async def prompt() -> None:
            try:
                await conn.prompt(
                    session_id=sid, prompt=[text_block('/call run_command {"command": "true"}')]
                )
            except RequestError as exc:
                errors.append(exc)

        async with anyio.create_task_group() as group:
            group.start_soon(prompt)
            await editor.asked.wait()
            prompt_id = max(i for i, m in wire.sent.items() if m == "session/prompt")
            await raw_notify(conn, "$/cancel_request", {"requestId": prompt_id})
        never.set()
        assert errors and errors[0].code == -32800
        assert (await conn.prompt(session_id=sid, prompt=[text_block("next")])).stop_reason
