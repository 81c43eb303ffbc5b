"""The tool loop against the fake OpenAI server, in both HTTP kinds, through the real session.

The model (tests/fake_openai.py's `tool:` scenario) asks for a client tool;
the client answers `tool/call`; the follow-up request carries the call and its
output in that kind's own format; the final text comes back as the turn's reply.
"""

import json
from typing import Any

import pytest
from client import text_input
from fake_openai import FakeCall, FakeOpenAI, Reply, Request, tool_call_events, tool_reply_text
from rpc_memory import session
from test_providers_http import make
from test_providers_tools import sse_raw

from convmgr.providers.echo import EchoProvider
from convmgr.providers.http import OpenAICompatibleProvider
from convmgr.providers.openai_chat import OpenAIChatProvider
from convmgr.providers.openai_responses import OpenAIResponsesProvider
from convmgr.providers.registry import ProviderRegistry

pytestmark = pytest.mark.anyio

KINDS = [OpenAIChatProvider, OpenAIResponsesProvider]
LOOKUP = {
    "name": "lookup",
    "description": "Looks up a key.",
    "inputSchema": {"type": "object", "properties": {"key": {"type": "string"}}},
}


def registry(cls: type[OpenAICompatibleProvider], server: FakeOpenAI) -> ProviderRegistry:
    """Echo and a provider of that kind on the fake server."""
    return ProviderRegistry(
        {"echo": EchoProvider(), "fake": make(cls, server, api_key_env=None)}, "echo"
    )


def answer_lookup(request: dict[str, Any]) -> dict[str, Any]:
    """The client's answer to tool/call lookup."""
    key = request["params"]["arguments"]["key"]
    return {
        "jsonrpc": "2.0",
        "id": request["id"],
        "result": {"content": [{"type": "text", "text": f"value of {key}"}]},
    }


def follow_up_shape(cls: type[OpenAICompatibleProvider], body: dict[str, Any]) -> list[Any]:
    """The call and its output as the follow-up request carries them."""
    if cls is OpenAIChatProvider:
        return [m for m in body["messages"] if m.get("tool_calls") or m["role"] == "tool"]
    return [i for i in body["input"] if i["type"] in ("function_call", "function_call_output")]


@pytest.mark.parametrize("cls", KINDS)
async def test_a_tool_call_round_trip_in_each_kind(cls: type[OpenAICompatibleProvider]) -> None:
    async with FakeOpenAI() as server, session(providers=registry(cls, server)) as client:
        await client.result(
            "newConversation",
            {
                "conversationId": "c",
                "provider": "fake",
                "model": 'tool:lookup:{"key": "k1"}',
                "tools": [LOOKUP],
            },
        )
        client.answer = answer_lookup
        await client.result("sendUserTurn", {"conversationId": "c", "input": text_input("hi")})
        events = await client.collect_turn("c")
        kinds = [e["event"]["type"] for e in events]
        assert kinds.count("toolCall") == 1 and kinds[-1] == "turnComplete"
        final = tool_reply_text(["value of k1"])
        assert events[-1]["event"]["lastAgentMessage"] == final
        first, second = (request.json() for request in server.requests)
        name = "function" if cls is OpenAIChatProvider else None
        tools = first["tools"]
        assert len(tools) == 1
        assert (tools[0]["function"]["name"] if name else tools[0]["name"]) == "lookup"
        if cls is OpenAIChatProvider:
            assert follow_up_shape(cls, second) == [
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_1_1",
                            "type": "function",
                            "function": {"name": "lookup", "arguments": '{"key": "k1"}'},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "call_1_1", "content": "value of k1"},
            ]
        else:
            assert follow_up_shape(cls, second) == [
                {
                    "type": "function_call",
                    "call_id": "call_1_1",
                    "name": "lookup",
                    "arguments": '{"key": "k1"}',
                },
                {"type": "function_call_output", "call_id": "call_1_1", "output": "value of k1"},
            ]
        got = await client.result(
            "getConversation", {"conversationId": "c", "includeHistory": True}
        )
        assert [i["type"] for i in got["history"]] == [
            "message",
            "functionCall",
            "functionCallOutput",
            "message",
        ]
        # The next turn sends the whole tool round back in the history.
        await client.result("sendUserTurn", {"conversationId": "c", "input": text_input("more")})
        events = await client.collect_turn("c")
        third = server.requests[2].json()
        assert follow_up_shape(cls, third) == follow_up_shape(cls, second)


@pytest.mark.parametrize("cls", KINDS)
async def test_a_tool_call_stream_cut_in_the_middle_is_retried_and_runs_once(
    cls: type[OpenAICompatibleProvider],
) -> None:
    calls = [
        FakeCall("call_a", "lookup", '{"key": "k1"}'),
        FakeCall("call_b", "lookup", '{"key": "k2"}'),
    ]

    async def handler(request: Request, reply: Reply) -> None:
        body = request.json()
        has_output = "tool" in json.dumps(body.get("messages", [])) or any(
            i.get("type") == "function_call_output" for i in body.get("input", [])
        )
        await reply.start()
        if has_output:
            await reply.sse(_text_event(cls, "done"), event=_text_event_name(cls))
            for event, payload in _final_events(cls):
                await reply.sse(payload, event=event)
            await reply.end()
            return
        events = tool_call_events(request, calls)
        if len(server.requests) == 1:
            raw = b"".join(sse_raw(e, p) for e, p in events)
            # Cut inside the second call's arguments.
            await reply.chunk(raw[: raw.index(b"k2") + 1])
            await reply.drop()
            return
        for event, payload in events:
            await reply.sse(payload, event=event)
        await reply.end()

    async with FakeOpenAI(handler) as server, session(providers=registry(cls, server)) as client:
        await client.result(
            "newConversation", {"conversationId": "c", "provider": "fake", "tools": [LOOKUP]}
        )
        client.answer = answer_lookup
        await client.result("sendUserTurn", {"conversationId": "c", "input": text_input("hi")})
        events = await client.collect_turn("c")
        kinds = [e["event"]["type"] for e in events]
        assert kinds.count("streamError") == 1
        assert [e["event"]["callId"] for e in events if e["event"]["type"] == "toolCall"] == [
            "call_a",
            "call_b",
        ]
        # Each call ran once on the client, after the retry.
        tool_calls = [r for r in client.from_server if r.get("method") == "tool/call"]
        assert [r["params"]["callId"] for r in tool_calls] == ["call_a", "call_b"]
        assert events[-1]["event"]["type"] == "turnComplete"
        assert len(server.requests) == 3


def _text_event_name(cls: type[OpenAICompatibleProvider]) -> str | None:
    return None if cls is OpenAIChatProvider else "response.output_text.delta"


def _text_event(cls: type[OpenAICompatibleProvider], text: str) -> dict[str, Any]:
    if cls is OpenAIChatProvider:
        return {"choices": [{"index": 0, "delta": {"content": text}}]}
    return {"type": "response.output_text.delta", "delta": text}


def _final_events(cls: type[OpenAICompatibleProvider]) -> list[tuple[str | None, Any]]:
    if cls is OpenAIChatProvider:
        return [
            (None, {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}),
            (None, "[DONE]"),
        ]
    return [("response.completed", {"type": "response.completed", "response": {"output": []}})]
