"""The core's events as `conversation/event` notifications: the dialect's one translator."""

from typing import Any

from convmgr.core import events as e
from convmgr.jsonrpc.outbound import Outbound


def wire_event(event: e.Event) -> dict[str, Any]:
    """The `event` object of a `conversation/event` notification (docs/protocol.md §6)."""
    kind = type(event)
    # Deltas first: they are nearly every event of a turn.
    if kind is e.AgentMessageDelta:
        return {"type": "agentMessageDelta", "delta": event.delta}  # type: ignore[union-attr]
    if kind is e.ReasoningDelta:
        return {"type": "reasoningDelta", "delta": event.delta}  # type: ignore[union-attr]
    match event:
        case e.TurnStarted():
            return {"type": "turnStarted"}
        case e.AgentMessage(text):
            return {"type": "agentMessage", "text": text}
        case e.TokenUsage(input_tokens, output_tokens, total_tokens):
            return {
                "type": "tokenUsage",
                "inputTokens": input_tokens,
                "outputTokens": output_tokens,
                "totalTokens": total_tokens,
            }
        case e.StreamError(message, attempt, retry_in_ms):
            return {
                "type": "streamError",
                "message": message,
                "attempt": attempt,
                "retryInMs": retry_in_ms,
            }
        case e.ToolCall(call_id, name, arguments, source, server, tool):
            call: dict[str, Any] = {
                "type": "toolCall",
                "callId": call_id,
                "name": name,
                "arguments": arguments,
                "source": source,
            }
            if server is not None:
                call["server"] = server
                call["tool"] = tool
            return call
        case e.ToolResult(call_id, text, is_error, denied):
            result: dict[str, Any] = {
                "type": "toolResult",
                "callId": call_id,
                "content": [{"type": "text", "text": text}],
                "isError": is_error,
            }
            if denied:
                result["denied"] = True
            return result
        case e.ToolSourceFailed(server, message):
            return {"type": "toolSourceFailed", "server": server, "message": message}
        case e.TurnComplete(last_agent_message, finish_reason):
            return {
                "type": "turnComplete",
                "lastAgentMessage": last_agent_message,
                "finishReason": finish_reason,
            }
        case e.TurnAborted(reason):
            return {"type": "turnAborted", "reason": reason}
        case e.TurnFailed(message, code):
            error: dict[str, Any] = {"message": message}
            if code is not None:
                error["code"] = code
            return {"type": "turnFailed", "error": error}
        case e.ShutdownComplete():
            return {"type": "shutdownComplete"}
    raise TypeError(f"not an event: {event!r}")


def event_params(
    conversation_id: str, seq: int, turn_id: str | None, event: e.Event
) -> dict[str, Any]:
    """The params of a `conversation/event` notification."""
    return {
        "conversationId": conversation_id,
        "seq": seq,
        "turnId": turn_id,
        "event": wire_event(event),
    }


class EventWriter:
    """The manager's event sink: conversation/event notifications on the outbound queue."""

    def __init__(self, outbound: Outbound) -> None:
        self._outbound = outbound

    def emit(self, conversation_id: str, seq: int, turn_id: str | None, event: e.Event) -> None:
        """Queue a conversation/event notification."""
        # event_params, built in place, and wire_event's first case without the
        # call: this runs once per streamed delta, where each call saved is
        # 1-2 % of the server's whole cost per delta.
        if type(event) is e.AgentMessageDelta:
            wire = {"type": "agentMessageDelta", "delta": event.delta}
        elif type(event) is e.ToolCallStarted:
            # This protocol has no such event (it takes no seq: see Conversation.note).
            return
        else:
            wire = wire_event(event)
        self._outbound.send(
            {
                "jsonrpc": "2.0",
                "method": "conversation/event",
                "params": {
                    "conversationId": conversation_id,
                    "seq": seq,
                    "turnId": turn_id,
                    "event": wire,
                },
            }
        )

    def congested(self) -> bool:
        """Whether more output is queued than a streaming turn may add to."""
        return self._outbound.congested()

    async def wait_ready(self) -> None:
        """Backpressure: wait while the client is behind."""
        await self._outbound.wait_ready()
