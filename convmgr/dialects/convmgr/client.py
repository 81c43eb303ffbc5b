"""The client as the core reaches it in this dialect: `tool/call` and `approval/request`."""

import logging
from typing import Any

from convmgr.core.client import ClientUnavailable, Decision, ToolRequest
from convmgr.jsonrpc.connection import Connection
from convmgr.jsonrpc.errors import ClientGone, RpcError
from convmgr.model import ToolOutcome
from convmgr.tools.results import MalformedResult, outcome_of_result

log = logging.getLogger(__name__)

class ConnectionClient:
    """Server → client requests over a Connection (docs/protocol.md §14)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        # Set by `initialize` when the client declares `capabilities.approvals: true`.
        self.approvals = False

    def can_approve(self) -> bool:
        """Whether the client said it answers approval requests."""
        return self.approvals

    def needs_approval(self, name: str) -> bool:
        """Never: in this dialect the client runs its own tools and may ask its user itself."""
        return False

    async def call_tool(self, request: ToolRequest) -> ToolOutcome:
        """`tool/call`; an error or a malformed answer is a failed call (logged)."""
        params = {
            "conversationId": request.conversation_id,
            "turnId": request.turn_id,
            "callId": request.call_id,
            "name": request.name,
            "arguments": request.arguments,
        }
        try:
            result = await self.conn.request("tool/call", params)
        except ClientGone as exc:
            raise ClientUnavailable(str(exc)) from None
        except RpcError as exc:
            log.info("tool/call %s answered with error %d: %s", request.call_id, exc.code, exc)
            return ToolOutcome(exc.message or f"error {exc.code}", is_error=True)
        try:
            return outcome_of_result(result)
        except MalformedResult as exc:
            log.warning("tool/call %s: malformed answer: %s", request.call_id, exc)
            return ToolOutcome(f"the client's answer is malformed: {exc}", is_error=True)

    async def request_approval(self, request: ToolRequest) -> Decision:
        """`approval/request`; anything but a known decision is "deny" (logged)."""
        params: dict[str, Any] = {
            "conversationId": request.conversation_id,
            "turnId": request.turn_id,
            "callId": request.call_id,
            "name": request.name,
            "arguments": request.arguments,
            "source": request.source,
        }
        if request.server is not None:
            params["server"] = request.server
        try:
            result = await self.conn.request("approval/request", params)
        except ClientGone as exc:
            raise ClientUnavailable(str(exc)) from None
        except RpcError as exc:
            log.info("approval/request %s answered with error: %s", request.call_id, exc)
            return "deny"
        decision = result.get("decision") if isinstance(result, dict) else None
        if decision == "allow":
            return "allow"
        if decision == "allowAlways":
            return "allowAlways"
        if decision == "deny":
            return "deny"
        log.warning("approval/request %s: malformed answer %r: denied", request.call_id, result)
        return "deny"
