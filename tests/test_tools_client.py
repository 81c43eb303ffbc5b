"""Client tools through the real session in memory (docs/protocol.md), driven by echo's /call.

The client declares tools on newConversation and answers the server's
`tool/call` requests; every message is checked against the wire models
(tests/client.py), server requests included.
"""

import json
from typing import Any

import anyio
import pytest
from client import TERMINAL, text_input
from rpc_memory import MemoryClient, session

from convmgr.core.tools import ToolLimits
from convmgr.dialects.convmgr.errors import ConvmgrCode, ErrorCode

pytestmark = pytest.mark.anyio

Message = dict[str, Any]

ADD = {
    "name": "add",
    "description": "Adds two numbers.",
    "inputSchema": {"type": "object", "properties": {"a": {"type": "number"}}},
}
LOOKUP = {"name": "lookup", "description": "Looks up a key.", "inputSchema": {"type": "object"}}


def text_result(text: str, is_error: bool = False) -> Message:
    """An MCP CallToolResult with one text block."""
    return {"content": [{"type": "text", "text": text}], "isError": is_error}


def answer(request: Message, result: Any) -> Message:
    """The client's response to a server request."""
    return {"jsonrpc": "2.0", "id": request["id"], "result": result}


def add_answer(request: Message) -> Message | None:
    """Answers tool/call `add` with the sum of its arguments."""
    if request["method"] != "tool/call":
        return None
    args = request["params"]["arguments"]
    return answer(request, text_result(str(sum(args.values()))))


async def new(client: MemoryClient, cid: str, tools: list[Message]) -> Message:
    """newConversation with client tools; its sessionConfigured."""
    result = await client.result("newConversation", {"conversationId": cid, "tools": tools})
    return result["sessionConfigured"]


async def turn(client: MemoryClient, cid: str, text: str) -> list[Message]:
    """Send a turn; its events (params) up to the terminal one."""
    await client.result("sendUserTurn", {"conversationId": cid, "input": text_input(text)})
    return await client.collect_turn(cid)


def of_type(events: list[Message], kind: str) -> list[Message]:
    """The events of one type, in order."""
    return [e["event"] for e in events if e["event"]["type"] == kind]


async def history(client: MemoryClient, cid: str) -> list[Message]:
    """The conversation's stored history."""
    got = await client.result("getConversation", {"conversationId": cid, "includeHistory": True})
    return got["history"]


async def test_one_call_runs_on_the_client_and_its_output_is_the_reply() -> None:
    async with session() as client:
        configured = await new(client, "c", [ADD])
        assert configured["tools"] == [ADD]
        client.answer = add_answer
        events = await turn(client, "c", '/call add {"a": 1, "b": 2}')
        kinds = [e["event"]["type"] for e in events]
        assert kinds[0] == "turnStarted" and kinds[-1] == "turnComplete"
        assert kinds.index("toolCall") < kinds.index("toolResult") < kinds.index("agentMessage")
        (request,) = client.from_server
        assert request["id"] == "s1" and request["method"] == "tool/call"
        assert request["params"] == {
            "conversationId": "c",
            "turnId": events[0]["turnId"],
            "callId": "call_1_1",
            "name": "add",
            "arguments": {"a": 1, "b": 2},
        }
        (call,) = of_type(events, "toolCall")
        assert call == {
            "type": "toolCall",
            "callId": "call_1_1",
            "name": "add",
            "arguments": {"a": 1, "b": 2},
            "source": "client",
        }
        (result,) = of_type(events, "toolResult")
        assert result == {
            "type": "toolResult",
            "callId": "call_1_1",
            "content": [{"type": "text", "text": "3"}],
            "isError": False,
        }
        assert events[-1]["event"]["lastAgentMessage"] == "3"
        assert [e["seq"] for e in events] == list(range(events[0]["seq"], events[-1]["seq"] + 1))
        assert await history(client, "c") == [
            {
                "type": "message",
                "role": "user",
                "content": [{"type": "text", "text": '/call add {"a": 1, "b": 2}'}],
            },
            {
                "type": "functionCall",
                "callId": "call_1_1",
                "name": "add",
                "arguments": '{"a": 1, "b": 2}',
            },
            {"type": "functionCallOutput", "callId": "call_1_1", "output": "3", "isError": False},
            {"type": "message", "role": "assistant", "content": [{"type": "text", "text": "3"}]},
        ]
        # The next turn's call ids carry its number.
        events = await turn(client, "c", "/call add {}")
        assert of_type(events, "toolCall")[0]["callId"] == "call_2_1"


async def test_three_calls_run_at_once_and_their_outputs_keep_the_models_order() -> None:
    async with session() as client:
        await new(client, "c", [LOOKUP])
        lines = "\n".join(f'/call lookup {{"key": "k{n}"}}' for n in (1, 2, 3))
        await client.result("sendUserTurn", {"conversationId": "c", "input": text_input(lines)})
        requests = [await client.server_request() for _ in range(3)]
        assert [r["params"]["callId"] for r in requests] == ["call_1_1", "call_1_2", "call_1_3"]
        # All three are pending at once; answered last to first.
        for request in reversed(requests):
            key = request["params"]["arguments"]["key"]
            await client.send(answer(request, text_result(f"value of {key}")))
        events = await client.collect_turn("c")
        results = of_type(events, "toolResult")
        assert [r["callId"] for r in results] == ["call_1_3", "call_1_2", "call_1_1"]
        assert events[-1]["event"]["lastAgentMessage"] == "value of k1\nvalue of k2\nvalue of k3"
        items = await history(client, "c")
        assert [i["type"] for i in items] == [
            "message",
            *["functionCall"] * 3,
            *["functionCallOutput"] * 3,
            "message",
        ]
        assert [i["output"] for i in items[4:7]] == ["value of k1", "value of k2", "value of k3"]


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (
            {"error": {"code": -32000, "message": "lookup failed: no such key"}},
            "lookup failed: no such key",
        ),
        ({"result": {"content": "not a list"}}, "malformed"),
        ({"result": "text"}, "malformed"),
        ({"result": {}}, "malformed"),
        (
            {"result": text_result("the tool's own failure", is_error=True)},
            "the tool's own failure",
        ),
    ],
    ids=["error-answer", "content-not-a-list", "not-an-object", "no-content", "isError-result"],
)
async def test_a_failed_or_malformed_answer_is_a_failed_call_and_the_turn_goes_on(
    reply: Message, expected: str
) -> None:
    async with session() as client:
        await new(client, "c", [LOOKUP])
        await client.result(
            "sendUserTurn", {"conversationId": "c", "input": text_input("/call lookup {}")}
        )
        request = await client.server_request()
        await client.send({"jsonrpc": "2.0", "id": request["id"], **reply})
        events = await client.collect_turn("c")
        (result,) = of_type(events, "toolResult")
        assert result["isError"] is True and expected in result["content"][0]["text"]
        assert events[-1]["event"]["type"] == "turnComplete"
        assert expected in events[-1]["event"]["lastAgentMessage"]
        # A second answer to the same id, and one to an id never sent, change nothing.
        await client.send(answer(request, text_result("late")))
        await client.send(answer({"id": "s999"}, text_result("stray")))
        assert await client.result("ping") == {}
        outputs = [i for i in await history(client, "c") if i["type"] == "functionCallOutput"]
        assert outputs[0]["isError"] is True and expected in outputs[0]["output"]


async def test_a_call_to_a_tool_the_conversation_lacks_fails_without_a_request() -> None:
    async with session() as client:
        await new(client, "c", [ADD])
        events = await turn(client, "c", "/call nosuch {}\n/call add {not json\n/call add [1, 2]")
        calls = of_type(events, "toolCall")
        # The parsed value when the text is JSON, the raw text when it is not.
        assert calls[1]["arguments"] == "{not json"
        assert calls[2]["arguments"] == [1, 2]
        results = of_type(events, "toolResult")
        assert {r["callId"]: r["isError"] for r in results} == {
            "call_1_1": True,
            "call_1_2": True,
            "call_1_3": True,
        }
        texts = {r["callId"]: r["content"][0]["text"] for r in results}
        assert "unknown tool: nosuch" in texts["call_1_1"]
        assert "not a JSON object" in texts["call_1_2"]
        assert "not a JSON object" in texts["call_1_3"]
        assert client.from_server == []
        assert events[-1]["event"]["type"] == "turnComplete"


async def test_no_answer_within_the_tool_timeout_fails_the_call_and_cancels_the_request() -> None:
    async with session(tool_limits=ToolLimits(tool_timeout_s=0.05)) as client:
        await new(client, "c", [LOOKUP])
        await client.result(
            "sendUserTurn", {"conversationId": "c", "input": text_input("/call lookup {}")}
        )
        request = await client.server_request()
        cancel = await client.server_request()
        assert cancel["method"] == "$/cancelRequest" and cancel["params"] == {"id": request["id"]}
        events = await client.collect_turn("c")
        (result,) = of_type(events, "toolResult")
        assert result["isError"] and "did not answer within 0.05 s" in result["content"][0]["text"]
        assert events[-1]["event"]["type"] == "turnComplete"


@pytest.mark.parametrize("how", ["interrupt", "remove"])
async def test_stopping_a_turn_while_the_client_holds_a_call_cancels_it(how: str) -> None:
    async with session() as client:
        await new(client, "c", [LOOKUP])
        await client.result(
            "sendUserTurn",
            {"conversationId": "c", "input": text_input("/call lookup {}\n/call lookup {}")},
        )
        first = await client.server_request()
        second = await client.server_request()
        # One call ends before the stop; the other is held by the client.
        await client.send(answer(first, text_result("done")))
        await client.wait_event("c", "toolResult")
        if how == "interrupt":
            assert await client.result("interruptConversation", {"conversationId": "c"}) == {
                "interrupted": True
            }
        else:
            assert await client.result("removeConversation", {"conversationId": "c"}) == {
                "removed": True
            }
        cancel = await client.server_request()
        assert cancel == {
            "jsonrpc": "2.0",
            "method": "$/cancelRequest",
            "params": {"id": second["id"]},
        }
        events = await client.collect_turn("c")
        assert of_type(events, "toolResult") == [
            {
                "type": "toolResult",
                "callId": "call_1_2",
                "content": [{"type": "text", "text": "aborted"}],
                "isError": True,
            }
        ]
        reason = "interrupted" if how == "interrupt" else "removed"
        assert events[-1]["event"] == {"type": "turnAborted", "reason": reason}
        # A late answer is ignored.
        await client.send(answer(second, text_result("late")))
        assert await client.result("ping") == {}
        if how == "interrupt":
            items = await history(client, "c")
            assert [(i["type"], i.get("output"), i.get("isError")) for i in items] == [
                ("message", None, None),
                ("functionCall", None, None),
                ("functionCall", None, None),
                ("functionCallOutput", "done", False),
                ("functionCallOutput", "aborted", True),
            ]
            # The next turn runs on a well-formed history.
            client.answer = lambda r: answer(r, text_result("again"))
            events = await turn(client, "c", "/call lookup {}")
            assert events[-1]["event"]["lastAgentMessage"] == "again"


async def test_after_end_of_input_a_pending_call_fails_as_client_gone() -> None:
    async with session() as client:
        await new(client, "c", [LOOKUP])
        await client.result(
            "sendUserTurn", {"conversationId": "c", "input": text_input("/call lookup {}")}
        )
        await client.server_request()
        client.close_input()
        events = await client.collect_turn("c")
        (result,) = of_type(events, "toolResult")
        assert result["isError"] and "client gone" in result["content"][0]["text"]
        assert events[-1]["event"]["type"] == "turnComplete"


async def test_max_tool_rounds_fails_the_turn_with_tool_rounds() -> None:
    async with session(tool_limits=ToolLimits(max_tool_rounds=3)) as client:
        await new(client, "c", [LOOKUP])
        # Every output asks for another call: the model never stops by itself.
        client.answer = lambda r: answer(r, text_result("/call lookup {}"))
        events = await turn(client, "c", "/call lookup {}")
        assert len(of_type(events, "toolCall")) == 2
        assert events[-1]["event"]["type"] == "turnFailed"
        assert events[-1]["event"]["error"]["code"] == "tool_rounds"
        items = await history(client, "c")
        assert [i["type"] for i in items].count("functionCallOutput") == 2


async def test_outputs_with_call_lines_make_further_rounds() -> None:
    async with session() as client:
        await new(client, "c", [LOOKUP])
        replies = iter(['/call lookup {"step": 2}', "final answer"])
        client.answer = lambda r: answer(r, text_result(next(replies)))
        events = await turn(client, "c", 'looking it up\n/call lookup {"step": 1}')
        assert [c["arguments"] for c in of_type(events, "toolCall")] == [{"step": 1}, {"step": 2}]
        assert [c["callId"] for c in of_type(events, "toolCall")] == ["call_1_1", "call_1_2"]
        messages = of_type(events, "agentMessage")
        assert [m["text"] for m in messages] == ["looking it up", "final answer"]
        assert events[-1]["event"]["lastAgentMessage"] == "final answer"


async def test_without_tools_echo_echoes_call_lines_and_nothing_is_asked() -> None:
    async with session() as client:
        await client.result("newConversation", {"conversationId": "c"})
        events = await turn(client, "c", "/call add {}")
        assert events[-1]["event"]["lastAgentMessage"] == "/call add {}"
        assert of_type(events, "toolCall") == [] and client.from_server == []


async def test_fork_and_resume_inherit_tools_unless_overridden(tmp_path) -> None:
    async with session() as client:
        await new(client, "c", [ADD])
        fork = await client.result(
            "forkConversation", {"conversationId": "c", "overrides": {"conversationId": "f"}}
        )
        assert fork["sessionConfigured"]["tools"] == [ADD]
        other = await client.result(
            "forkConversation",
            {"conversationId": "c", "overrides": {"conversationId": "g", "tools": [LOOKUP]}},
        )
        assert other["sessionConfigured"]["tools"] == [LOOKUP]
        client.answer = add_answer
        events = await turn(client, "f", '/call add {"a": 2}')
        assert events[-1]["event"]["lastAgentMessage"] == "2"


@pytest.mark.parametrize(
    ("tools", "field"),
    [
        ([{"name": "bad name", "inputSchema": {}}], "tools.0.name"),
        ([{"name": "x" * 65, "inputSchema": {}}], "tools.0.name"),
        ([ADD, ADD], "tools"),
        ([{"name": "t", "inputSchema": "string"}], "tools.0.inputSchema"),
        ([{"name": "t"}], "tools.0.inputSchema"),
    ],
    ids=["pattern", "too-long", "duplicate", "schema-not-object", "schema-missing"],
)
async def test_bad_tools_are_invalid_params_naming_the_field(
    tools: list[Message], field: str
) -> None:
    async with session() as client:
        error = await client.error("newConversation", {"tools": tools})
        assert error["code"] == ErrorCode.INVALID_PARAMS
        assert field in error["message"]
        assert (await client.result("listConversations"))["items"] == []


async def test_unknown_mcp_server_is_invalid_params() -> None:
    async with session() as client:
        error = await client.error("newConversation", {"mcpServers": ["nope"]})
        assert error["code"] == ErrorCode.INVALID_PARAMS and "nope" in error["message"]


async def test_a_busy_conversation_stays_busy_while_a_tool_runs() -> None:
    async with session() as client:
        await new(client, "c", [LOOKUP])
        await client.result(
            "sendUserTurn", {"conversationId": "c", "input": text_input("/call lookup {}")}
        )
        request = await client.server_request()
        error = await client.error(
            "sendUserTurn", {"conversationId": "c", "input": text_input("x")}
        )
        assert error["code"] == ConvmgrCode.CONVERSATION_BUSY
        await client.send(answer(request, text_result("ok")))
        events = await client.collect_turn("c")
        assert events[-1]["event"]["type"] == "turnComplete"


async def test_a_hundred_conversations_loop_ten_rounds_at_once() -> None:
    conversations, rounds = 100, 10

    def reply(request: Message) -> Message:
        step = request["params"]["arguments"]["step"]
        text = f'/call lookup {{"step": {step + 1}}}' if step < rounds else f"done {step}"
        return answer(request, text_result(text))

    async with session() as client:
        client.answer = reply
        for n in range(conversations):
            await new(client, f"c{n}", [LOOKUP])
        for n in range(conversations):
            await client.send(
                {
                    "jsonrpc": "2.0",
                    "id": f"turn{n}",
                    "method": "sendUserTurn",
                    "params": {
                        "conversationId": f"c{n}",
                        "input": text_input('/call lookup {"step": 1}'),
                    },
                }
            )
        seen: dict[str, list[Message]] = {f"c{n}": [] for n in range(conversations)}
        ended = 0
        with anyio.fail_after(60):
            while ended < conversations:
                msg = await client.read_message()
                if "method" not in msg:
                    assert "result" in msg, msg
                    continue
                params = msg["params"]
                seen[params["conversationId"]].append(params)
                ended += params["event"]["type"] in TERMINAL
        for cid, events in seen.items():
            seqs = [e["seq"] for e in events]
            assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), cid
            assert len(of_type(events, "toolCall")) == rounds
            assert events[-1]["event"] == {
                "type": "turnComplete",
                "lastAgentMessage": f"done {rounds}",
                "finishReason": "stop",
            }
        assert len(client.from_server) == conversations * rounds
        ids = [r["id"] for r in client.from_server]
        assert len(set(ids)) == len(ids)
        assert json.dumps(seen)  # every event is JSON


@pytest.mark.parametrize(
    "reply",
    [
        {"result": text_result("x"), "error": {"code": 1, "message": "both"}},
        {"error": {"code": "not-an-int", "message": "bad code"}},
    ],
    ids=["result-and-error", "non-integer-code"],
)
async def test_a_malformed_response_fails_the_call_at_once(reply: Message) -> None:
    # A long tool timeout: the call must not wait for it.
    async with session(tool_limits=ToolLimits(tool_timeout_s=600)) as client:
        await new(client, "c", [LOOKUP])
        await client.result(
            "sendUserTurn", {"conversationId": "c", "input": text_input("/call lookup {}")}
        )
        request = await client.server_request()
        await client.send({"jsonrpc": "2.0", "id": request["id"], **reply})
        events = await client.collect_turn("c", timeout=10)
        (result,) = of_type(events, "toolResult")
        assert result["isError"] and "malformed answer" in result["content"][0]["text"]
        # Nothing was sent back for the bad answer: the next message is ping's.
        assert await client.result("ping") == {}
