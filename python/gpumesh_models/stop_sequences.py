"""Stop sequences for streamed text: what may be sent now, what must wait, where the text ends. Pure.

A stop sequence is not returned, and text that could still turn out to be its beginning is held back
until it cannot, so a stream and a non-streamed completion with the same seed return the same text.
"""

from collections.abc import Sequence


class StopSequenceFilter:
    def __init__(self, stop: Sequence[str]):
        if any(not sequence for sequence in stop):
            raise ValueError("stop sequences must not be empty")
        self.stop = tuple(stop)
        self.longest = max((len(sequence) for sequence in self.stop), default=0)
        self.text = ""  # everything generated so far
        self.sent = 0  # how much of text has been released
        self.stopped = False

    def push(self, piece: str) -> str:
        """Adds generated text; returns the text now safe to release ("" if none). Sets stopped on a match."""
        assert not self.stopped, "push after a stop sequence matched"
        searched_from = max(0, len(self.text) - self.longest + 1)
        self.text += piece
        end = self._first_match(searched_from)
        if end is not None:
            self.stopped = True
            self.text = self.text[:end]
            return self._release(end)
        return self._release(len(self.text) - self._held_back())

    def flush(self) -> str:
        """The held-back rest, once generation has ended without a match."""
        return self._release(len(self.text))

    def _first_match(self, searched_from: int) -> int | None:
        # Earlier text held no match (it was checked when pushed), so only a match reaching into the new
        # piece is possible: searching from longest-1 characters before it is enough.
        positions = [self.text.find(sequence, searched_from) for sequence in self.stop]
        found = [position for position in positions if position >= 0]
        return min(found) if found else None

    def _held_back(self) -> int:
        """Length of the longest end of text that is the start of a stop sequence."""
        for length in range(min(self.longest - 1, len(self.text) - self.sent), 0, -1):
            tail = self.text[-length:]
            if any(sequence.startswith(tail) for sequence in self.stop):
                return length
        return 0

    def _release(self, end: int) -> str:
        released = self.text[self.sent : end]
        self.sent = max(self.sent, end)
        return released
