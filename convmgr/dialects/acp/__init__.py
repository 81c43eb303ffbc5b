"""ACP, the Agent Client Protocol (PROTOCOL section 10): `convmgr acp`, for editors."""
