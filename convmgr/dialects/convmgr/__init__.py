"""The convmgr dialect: docs/protocol.md §§1-14, its wire types and its method table."""
