"""The errors of a JSON-RPC exchange, either way."""

from typing import Any


class RpcError(Exception):
    """A JSON-RPC error: raised by a handler to answer with it, or by a request the peer refused."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = int(code)
        self.message = message
        self.data = data


class ClientGone(Exception):
    """A request to the client that cannot be answered: its input has ended."""
