"""The protocol dialects a client can speak to convmgr, over one manager."""
