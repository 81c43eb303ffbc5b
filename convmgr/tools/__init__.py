"""Where tools come from besides the client: MCP servers, and turning tool results into text."""
