"""convmgr's own JSON-RPC error codes (docs/protocol.md §7); the standard ones are jsonrpc's."""

from enum import IntEnum

from convmgr.jsonrpc.codes import ErrorCode

__all__ = ["ConvmgrCode", "ErrorCode"]


class ConvmgrCode(IntEnum):
    """The codes convmgr adds to JSON-RPC's."""

    CONVERSATION_NOT_FOUND = -32001
    CONVERSATION_BUSY = -32002
    CONVERSATION_EXISTS = -32003
    CONVERSATION_LOCKED = -32004
    OVERLOADED = -32005
    STORAGE_FAILED = -32006
