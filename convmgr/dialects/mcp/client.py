"""The MCP host as the core reaches it: approvals through elicitation, and no tools of its own.

A host that declares form elicitation (protocol 2025-06-18 or later) is asked
`elicitation/create` before a call to an MCP tool source with approval =
"ask"; any other host cannot be asked, so such calls are denied (docs/protocol.md
§16). Conversations started here have no client tools, but a stored
one from `convmgr serve` may: calls to them fail, since an MCP host runs no
tools for its servers.
"""

import json
import logging
from typing import Any

from convmgr.core.client import ClientUnavailable, Decision, ToolRequest
from convmgr.dialects.mcp import validate
from convmgr.dialects.mcp.wire import ElicitRequestFormParams
from convmgr.jsonrpc.connection import Connection
from convmgr.jsonrpc.errors import ClientGone, RpcError
from convmgr.model import ToolOutcome

log = logging.getLogger(__name__)

# How much of a call's arguments the question quotes.
_ARGUMENTS_SHOWN = 2000

DECISIONS: dict[str, Decision] = {
    "allow": "allow",
    "allowAlways": "allowAlways",
    "deny": "deny",
}

APPROVAL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "decision": {
            "type": "string",
            "title": "Decision",
            "description": "allow: this call; allowAlways: this tool, in this conversation, "
            "until convmgr exits; deny: not this call",
            "enum": list(DECISIONS),
        }
    },
    "required": ["decision"],
}


class ElicitingClient:
    """ClientChannel over an MCP connection."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        # Set by `initialize`: the host declared form elicitation.
        self.elicitation = False

    def can_approve(self) -> bool:
        """Whether the host can be asked (it declared form elicitation)."""
        return self.elicitation

    def needs_approval(self, name: str) -> bool:
        """An MCP host declares no tools of its own: nothing of the kind to approve."""
        return False

    async def call_tool(self, request: ToolRequest) -> ToolOutcome:
        """An MCP host runs no tools for its servers: the call fails."""
        return ToolOutcome(
            f"{request.name} is a client tool, and an MCP host cannot run it", is_error=True
        )

    async def request_approval(self, request: ToolRequest) -> Decision:
        """`elicitation/create` with a one-question form; anything but accept is "deny"."""
        shown = json.dumps(request.arguments, ensure_ascii=False)
        if len(shown) > _ARGUMENTS_SHOWN:
            shown = shown[:_ARGUMENTS_SHOWN] + "…"
        where = f" (MCP server {request.server})" if request.server else ""
        params: ElicitRequestFormParams = {
            "message": f"Conversation {request.conversation_id}: the model wants to call "
            f"{request.name}{where} with {shown}. Allow it?",
            "requestedSchema": APPROVAL_SCHEMA,
        }
        try:
            result = await self.conn.request("elicitation/create", dict(params))
        except ClientGone as exc:
            raise ClientUnavailable(str(exc)) from None
        except RpcError as exc:
            log.info("elicitation for %s answered error %d: %s", request.call_id, exc.code, exc)
            return "deny"
        try:
            answer = validate.read("ElicitResult", result)
        except validate.Invalid as exc:
            log.warning("elicitation for %s: malformed answer (%s): denied", request.call_id, exc)
            return "deny"
        content = answer.get("content") or {}
        decision = content.get("decision") if answer["action"] == "accept" else "deny"
        if decision not in DECISIONS:
            log.warning("elicitation for %s: decision %r: denied", request.call_id, decision)
            return "deny"
        return DECISIONS[decision]
