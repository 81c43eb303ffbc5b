"""Model providers: the interface, the built-in echo model, OpenAI-compatible HTTP."""
