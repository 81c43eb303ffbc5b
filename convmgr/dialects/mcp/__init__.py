"""The MCP dialect (`convmgr mcp`): conversations as MCP tools and resources."""
