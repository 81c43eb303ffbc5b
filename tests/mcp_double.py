"""A stdio MCP server for faults a real one will not show on demand (the SDK's low-level Server).

It says what happens to it on stderr (which convmgr logs), one line each:
`pid N` at start, `hang started` / `hang cancelled` for the tool that never
answers, `dying` before the tool that kills the process. `echo` answers its
arguments as JSON, `env` its environment. Flags: `--pages N`
lists its tools N to a page (following nextCursor); `--stubborn` ignores SIGTERM
and end of stdin while `block` runs (only SIGKILL ends it then).
"""

import argparse
import json
import os
import signal
import sys
import time
from typing import Any

import anyio
import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server

_OBJECT: dict[str, Any] = {"type": "object", "properties": {}}
TOOLS = [
    types.Tool(name=name, description=f"the {name} tool", input_schema=_OBJECT)
    for name in ("echo", "hang", "die", "block", "rpc_error", "env", "odd.name")
]


def say(line: str) -> None:
    """One line on stderr, at once."""
    print(line, file=sys.stderr, flush=True)


def main() -> None:
    """Serve on stdio until stdin ends."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--pages", type=int, default=0)
    parser.add_argument("--stubborn", action="store_true")
    args = parser.parse_args()
    if args.stubborn:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)

    async def list_tools(
        ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        if not args.pages:
            return types.ListToolsResult(tools=TOOLS)
        start = int(params.cursor) if params is not None and params.cursor else 0
        end = start + args.pages
        cursor = str(end) if end < len(TOOLS) else None
        return types.ListToolsResult(tools=TOOLS[start:end], next_cursor=cursor)

    async def call_tool(
        ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        name = params.name
        if name == "hang":
            say("hang started")
            try:
                await anyio.sleep_forever()
            except anyio.get_cancelled_exc_class():
                say("hang cancelled")
                raise
        if name == "die":
            say("dying")
            os._exit(3)
        if name == "block":
            say("block started")
            # Blocks the event loop: it reads neither stdin nor any notification.
            time.sleep(60)
        if name == "rpc_error":
            from mcp.shared.exceptions import MCPError

            raise MCPError(code=types.INVALID_PARAMS, message="no such thing")
        answer = dict(os.environ) if name == "env" else params.arguments or {}
        text = json.dumps(answer)
        return types.CallToolResult(content=[types.TextContent(type="text", text=text)])

    server = Server("double", on_list_tools=list_tools, on_call_tool=call_tool)

    async def serve() -> None:
        say(f"pid {os.getpid()}")
        async with stdio_server() as (read, write):
            await server.run(read, write, server.create_initialization_options())

    anyio.run(serve)


if __name__ == "__main__":
    main()
