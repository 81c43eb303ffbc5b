"""The conversation manager: conversations, turns, history; knows nothing of JSON-RPC."""
