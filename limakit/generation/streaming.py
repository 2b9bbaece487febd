"""Turning a stream of token ids into a stream of text, with stop strings.

Decoding token by token breaks multi-byte characters and word-initial spaces, so the text is
re-decoded from all ids and only the new suffix is emitted; a trailing replacement character (an
incomplete UTF-8 sequence) is held back until the next token completes it.
"""

from __future__ import annotations


class TextStream:
    """Feed token ids, get text deltas; stops at the first of ``stop`` strings (excluded).

    >>> s = TextStream(tok, stop=["\\n\\n"])  # doctest: +SKIP
    >>> s.push(tok_id)  # -> new text (maybe '') ; s.stopped tells whether a stop string was hit
    """

    def __init__(self, tokenizer, stop: list[str] | None = None):
        self.tokenizer = tokenizer
        self.stop = [s for s in (stop or []) if s]
        self.ids: list[int] = []
        self.text = ""  # decoded so far (may run ahead of what was emitted)
        self.emitted = 0  # characters of ``text`` already handed out
        self.stopped = False

    def push(self, token_id: int) -> str:
        if self.stopped:
            return ""
        self.ids.append(token_id)
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        if text.endswith("\ufffd"):
            return ""
        self.text = text
        return self._release(final=False)

    def finish(self) -> str:
        """Whatever is still held back once the sequence ends."""
        return "" if self.stopped else self._release(final=True)

    def _release(self, final: bool) -> str:
        hits = [self.text.find(s, max(0, self.emitted - len(s) + 1)) for s in self.stop]
        hits = [at for at in hits if at != -1]
        if hits:
            self.stopped = True
            self.text = self.text[: min(hits)]
        # Unless stopped or done, hold back what could be the start of a stop string.
        hold = 0 if final else max((len(s) - 1 for s in self.stop), default=0)
        end = (
            len(self.text) if (self.stopped or final) else max(self.emitted, len(self.text) - hold)
        )
        delta = self.text[self.emitted : end]
        self.emitted = max(self.emitted, end)
        return delta
