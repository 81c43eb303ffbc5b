"""Conversation persistence: the store interface and its implementations."""
