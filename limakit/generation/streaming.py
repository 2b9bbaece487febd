"""Turning a stream of token ids into a stream of text, with stop strings.

Decoding token by token breaks multi-byte characters and word-initial spaces. So each new token is
decoded together with a few tokens before it, and the new text is what that window decodes to
beyond what its older tokens alone decode to: the same text as decoding every id at once, at a
cost per token that does not grow with the answer (re-decoding everything costs 0.3 ms a token
by 2,000 tokens, which at 64 streams is more than the event loop has). A trailing replacement
character (an incomplete UTF-8 sequence) is held back until the next token completes it.
"""

from __future__ import annotations


class TextStream:
    """Feed token ids, get text deltas; stops at the first of ``stop`` strings (excluded).

    >>> s = TextStream(tok, stop=["\\n\\n"])  # doctest: +SKIP
    >>> s.push(tok_id)  # -> new text (maybe '') ; s.stopped tells whether a stop string was hit
    """

    lookback = 4  # tokens decoded again before the new ones: context for spaces and merges

    def __init__(self, tokenizer, stop: list[str] | None = None):
        self.tokenizer = tokenizer
        self.stop = [s for s in (stop or []) if s]
        self.ids: list[int] = []
        self.read = 0  # ids[:read] are decoded into ``text``
        self.text = ""  # decoded so far (may run ahead of what was emitted)
        self.emitted = 0  # characters of ``text`` already handed out
        self.stopped = False

    def push(self, token_id: int) -> str:
        if self.stopped:
            return ""
        self.ids.append(token_id)
        self._decode_new(final=False)
        return self._release(final=False)

    def finish(self) -> str:
        """Whatever is still held back once the sequence ends."""
        if self.stopped:
            return ""
        self._decode_new(final=True)
        return self._release(final=True)

    def _decode_new(self, final: bool) -> None:
        """Extend ``text`` by the unread ids, unless they end inside a character (and more come)."""
        if self.read == len(self.ids):
            return
        start, known = self._context()
        window = self.tokenizer.decode(self.ids[start:], skip_special_tokens=True)
        if window.endswith("\ufffd") and not final:
            return
        if window.startswith(known):
            self.text += window[len(known) :]
        else:  # the new ids changed how the older ones decode: decode everything, to be exact
            self.text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        self.read = len(self.ids)

    def _context(self) -> tuple[int, str]:
        """(start, text of ids[start:read]): a few decoded tokens before the unread ones, starting
        on a whole character (decoders strip a leading space, or garble a byte run cut in two)."""
        start = self.read
        known = ""
        while start > 0 and (not known or known[0] == "\ufffd"):
            start = max(0, start - self.lookback)
            known = self.tokenizer.decode(self.ids[start : self.read], skip_special_tokens=True)
        return start, known

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
