"""JSON-RPC over stdio: framing, validation, the connection; knows nothing of conversations."""
