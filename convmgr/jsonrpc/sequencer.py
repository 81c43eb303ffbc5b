"""Per-key ordering: work naming a key starts only after earlier work on that key ended."""

from collections.abc import Iterable

import anyio


class Ticket:
    """A place in line for some keys: wait() for earlier holders, then release()."""

    __slots__ = ("_after", "_dependents", "_done", "_keys", "_sequencer")

    def __init__(self, sequencer: "KeyedSequencer", keys: tuple[str, ...]) -> None:
        self._sequencer = sequencer
        self._keys = keys
        self._done = anyio.Event()
        # Tickets released before their turn, waiting for this one to be done.
        self._dependents: list[Ticket] = []
        self._after = [sequencer._tails[k] for k in keys if k in sequencer._tails]
        for key in keys:
            sequencer._tails[key] = self

    async def wait(self) -> None:
        """Return once every earlier ticket on these keys is released."""
        for ticket in self._after:
            await ticket._done.wait()
        self._after = []

    def release(self) -> None:
        """Let the next ticket on these keys go, once every earlier one is done too.

        A ticket released before its turn (its work was cancelled while it waited)
        keeps its place until then: later work must not overtake earlier work.
        """
        self._after = [ticket for ticket in self._after if not ticket._done.is_set()]
        if self._after:
            for ticket in self._after:
                ticket._dependents.append(self)
            return
        # Iterative: a cancelled run of requests may be a long chain of dependents.
        ready = [self]
        while ready:
            ticket = ready.pop()
            ticket._finish()
            for dependent in ticket._dependents:
                dependent._after = [t for t in dependent._after if not t._done.is_set()]
                if not dependent._after and not dependent._done.is_set():
                    ready.append(dependent)
            ticket._dependents = []

    def _finish(self) -> None:
        self._done.set()
        tails = self._sequencer._tails
        for key in self._keys:
            if tails.get(key) is self:
                del tails[key]


class KeyedSequencer:
    """Hands out tickets in call order; only the last holder per key is remembered."""

    def __init__(self) -> None:
        self._tails: dict[str, Ticket] = {}

    def idle(self, key: str) -> bool:
        """Whether no unfinished work holds this key (so it may run inline now)."""
        return key not in self._tails

    def held(self) -> tuple[str, ...]:
        """Every key some unfinished work holds (a ticket on all of them comes after it all)."""
        return tuple(self._tails)

    def ticket(self, keys: Iterable[str]) -> Ticket:
        """Take a place in line behind all earlier work on these keys."""
        return Ticket(self, tuple(dict.fromkeys(keys)))
