"""ACP, the Agent Client Protocol (docs/protocol.md §15): `convmgr acp`, for editors."""
