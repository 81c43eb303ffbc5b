"""The built-in `echo` provider: an offline, deterministic model."""

import re
from collections.abc import AsyncGenerator

from anyio.lowlevel import checkpoint

from convmgr.providers.base import ProviderEvent, TextDelta, TurnRequest, Usage

# A word with the white space after it; the first match also takes any leading
# white space, and white-space-only input is one match, so the deltas always
# concatenate to exactly the input.
_WORD = re.compile(r"\s*\S+\s*|\s+")
_WORDS_PER_CHECKPOINT = 32


class EchoProvider:
    """Replies with the turn's input, one delta per word."""

    name = "echo"
    kind = "echo"
    default_model = "echo"
    needs_history = False

    async def stream(self, request: TurnRequest) -> AsyncGenerator[ProviderEvent, None]:
        """Yield the input word by word, giving the loop a turn every few words."""
        count = 0
        for match in _WORD.finditer(request.input_text):
            # Giving the loop a turn every few words lets an interrupt land within
            # well under a millisecond, without paying a loop pass per delta.
            if count % _WORDS_PER_CHECKPOINT == 0:
                await checkpoint()
            count += 1
            yield TextDelta(match.group())
        yield Usage(input_tokens=count, output_tokens=count, total_tokens=2 * count)

    async def aclose(self) -> None:
        """Nothing to release."""
