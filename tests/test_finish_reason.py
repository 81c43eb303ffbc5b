"""turnComplete.finishReason (docs/protocol.md): stop, length (the output limit), refusal."""

import json

import pytest
from client import text_input
from rpc_memory import session

from convmgr.providers.base import Finish, TextDelta
from convmgr.providers.openai_chat import ChatStreamParser
from convmgr.providers.openai_responses import ResponsesStreamParser

pytestmark = pytest.mark.anyio


def chat_chunk(delta: dict, finish: str | None = None) -> str:
    return json.dumps({"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})


@pytest.mark.parametrize(
    ("finish", "expected"),
    [
        ("stop", []),
        ("tool_calls", []),
        ("length", [Finish("length")]),
        ("content_filter", [Finish("refusal")]),
    ],
)
def test_chat_finish_reasons(finish: str, expected: list[Finish]) -> None:
    parser = ChatStreamParser()
    assert parser.feed("message", chat_chunk({"content": "Hi"})) == [TextDelta("Hi")]
    assert parser.feed("message", chat_chunk({}, finish)) == expected
    assert parser.complete


def test_a_chat_refusal_is_its_text_and_the_reason() -> None:
    parser = ChatStreamParser()
    events = parser.feed("message", chat_chunk({"refusal": "I can't help with that."}))
    assert events == [TextDelta("I can't help with that."), Finish("refusal")]


@pytest.mark.parametrize(
    ("details", "expected"),
    [({"reason": "max_output_tokens"}, "length"), ({"reason": "content_filter"}, "refusal")],
)
def test_an_incomplete_response_says_why(details: dict, expected: str) -> None:
    parser = ResponsesStreamParser()
    payload = {"type": "response.incomplete", "response": {"incomplete_details": details}}
    assert Finish(expected) in parser.feed("response.incomplete", json.dumps(payload))
    assert parser.complete


def test_a_responses_refusal_delta() -> None:
    parser = ResponsesStreamParser()
    payload = {"type": "response.refusal.delta", "delta": "No."}
    assert parser.feed("response.refusal.delta", json.dumps(payload)) == [
        TextDelta("No."),
        Finish("refusal"),
    ]
    completed = {"type": "response.completed", "response": {}}
    assert parser.feed("response.completed", json.dumps(completed)) == []


async def test_an_echo_turn_finishes_with_stop() -> None:
    async with session() as client:
        await client.result("newConversation", {"conversationId": "c"})
        await client.result("sendUserTurn", {"conversationId": "c", "input": text_input("hi")})
        events = await client.collect_turn("c")
        assert events[-1]["event"] == {
            "type": "turnComplete",
            "lastAgentMessage": "hi",
            "finishReason": "stop",
        }
