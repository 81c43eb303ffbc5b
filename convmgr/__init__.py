"""convmgr: a conversation manager for LLM agents, served as JSON-RPC over stdio."""

__version__ = "1.0.0"
