"""The error codes JSON-RPC 2.0 (and LSP, for cancellation) define."""

from enum import IntEnum


class ErrorCode(IntEnum):
    """Standard JSON-RPC error codes."""

    PARSE_ERROR = -32700
    INVALID_REQUEST = -32600
    METHOD_NOT_FOUND = -32601
    INVALID_PARAMS = -32602
    INTERNAL_ERROR = -32603
    REQUEST_CANCELLED = -32800
