"""Errors every persistent store raises when it cannot be opened or is used closed."""


class StoreOpenError(Exception):
    """The store cannot be opened; the message is one line meant for a human."""


class StoreClosedError(RuntimeError):
    """The store was used before open() or after close()."""
