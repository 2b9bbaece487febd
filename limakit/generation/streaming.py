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
    """Feed token ids, get text deltas; stops at the first of ``stop`` strings or ``markers`` (a
    chat format's own markers, see :mod:`limakit.generation.chat_format`), which is excluded.

    >>> s = TextStream(tok, stop=["\\n\\n"])  # doctest: +SKIP
    >>> s.push(tok_id)  # doctest: +SKIP

    ``push`` returns the new text (maybe empty); ``s.stopped`` tells whether a stop was hit.
    """

    lookback = 4  # tokens decoded again before the new ones: context for spaces and merges

    def __init__(self, tokenizer, stop: list[str] | None = None, markers: tuple[str, ...] = ()):
        self.tokenizer = tokenizer
        self.markers = tuple(m for m in markers if m)
        self.stop = [s for s in (stop or []) if s] + list(self.markers)
        self.hit: str | None = None  # the stop string or marker the text stopped at
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
        found = [(self.text.find(s, max(0, self.emitted - len(s) + 1)), s) for s in self.stop]
        hits = [(at, s) for at, s in found if at != -1]
        if hits:
            at, self.hit = min(hits)
            self.stopped = True
            self.text = self.text[:at]
        # Unless stopped or done, hold back what could be the start of a stop string.
        hold = 0 if final else max((len(s) - 1 for s in self.stop), default=0)
        end = (
            len(self.text) if (self.stopped or final) else max(self.emitted, len(self.text) - hold)
        )
        delta = self.text[self.emitted : end]
        self.emitted = max(self.emitted, end)
        return delta

    @property
    def at_marker(self) -> bool:
        """Whether the text stopped at one of the ``markers`` (not at a stop string)."""
        return self.hit is not None and self.hit in self.markers


class TokenPieces:
    """Each token's own text and bytes, for log-probability reports (cached per id).

    A byte-level BPE token is mapped back to its bytes, which may be part of a character; a
    sentencepiece byte token (``<0xE2>``) is its byte; ``▁`` stands for a space. ``text`` is the
    bytes as UTF-8, or ``bytes:\\xe2\\x80`` when they are not whole characters (OpenAI's way).
    """

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        decoder = getattr(getattr(tokenizer, "backend_tokenizer", None), "decoder", None)
        self.byte_level = "ByteLevel" in repr(decoder)
        self.special = set(getattr(tokenizer, "all_special_ids", []) or [])
        self.cache: dict[int, tuple[str, bytes]] = {}

    def __call__(self, token_id: int) -> tuple[str, bytes]:
        """(text, bytes) of one token."""
        hit = self.cache.get(token_id)
        if hit is None:
            raw = self._bytes(token_id)
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                text = "bytes:" + "".join(f"\\x{b:02x}" for b in raw)
            hit = self.cache[token_id] = (text, raw)
        return hit

    def text(self, token_id: int) -> str:
        return self(token_id)[0]

    def _bytes(self, token_id: int) -> bytes:
        piece = self.tokenizer.convert_ids_to_tokens(token_id)
        if piece is None:
            return b""
        if token_id in self.special:
            return piece.encode("utf-8")
        if self.byte_level:
            table = _unicode_to_byte()
            if all(c in table for c in piece):
                return bytes(table[c] for c in piece)
        if len(piece) == 6 and piece.startswith("<0x") and piece.endswith(">"):
            try:
                return bytes([int(piece[3:5], 16)])
            except ValueError:
                pass
        return piece.replace("\u2581", " ").encode("utf-8")


_BYTE_TABLE: dict[str, int] = {}


def _unicode_to_byte() -> dict[str, int]:
    """The inverse of byte-level BPE's byte -> printable character map (GPT-2's)."""
    if not _BYTE_TABLE:
        printable = [
            *range(ord("!"), ord("~") + 1),
            *range(ord("¡"), ord("¬") + 1),
            *range(ord("®"), ord("ÿ") + 1),
        ]
        chars = list(printable)
        extra = 0
        for b in range(256):
            if b not in printable:
                printable.append(b)
                chars.append(256 + extra)
                extra += 1
        _BYTE_TABLE.update({chr(c): b for b, c in zip(printable, chars)})
    return _BYTE_TABLE
