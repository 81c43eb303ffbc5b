"""JSON-RPC error codes used by convmgr (PROTOCOL.md section 6)."""

from enum import IntEnum


class ErrorCode(IntEnum):
    """Every error code convmgr answers with."""

    PARSE_ERROR = -32700
    INVALID_REQUEST = -32600
    METHOD_NOT_FOUND = -32601
    INVALID_PARAMS = -32602
    INTERNAL_ERROR = -32603
    REQUEST_CANCELLED = -32800
    CONVERSATION_NOT_FOUND = -32001
    CONVERSATION_BUSY = -32002
    CONVERSATION_EXISTS = -32003
    CONVERSATION_LOCKED = -32004
    OVERLOADED = -32005
    STORAGE_FAILED = -32006
