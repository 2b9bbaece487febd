"""What training will see of an example, in tokens: curation's ``too_long`` rule and the longest
trained answer (the floor of every sampling cap of a run).

Curation that knows the training length rejects a conversation that would not fit ``max_len``
tokens once rendered in the training template, instead of letting training trim it later (a
trimmed example never trains its end of turn; one trimmed inside its prompt trains nothing).

>>> lengths = TokenLengths(load_model_for("smollm2-135m", weights=False), max_len=512)  # doctest: +SKIP
>>> lengths.too_long(example)  # doctest: +SKIP
'rendered conversation exceeds max_len=512 tokens'
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import TYPE_CHECKING

from limakit.records.example import Example, read_examples
from limakit.records.template import Template

if TYPE_CHECKING:
    from limakit.models import LoadedModel

RULE = "too_long"


class TokenLengths:
    """An example's token counts in the training template of the model training loads
    (``loaded``: its tokenizer, with the EOT added, and its template, as training loads them;
    the weights are not needed), so the counts are the ones training sees."""

    def __init__(self, loaded: LoadedModel, max_len: int | None = None) -> None:
        self.tokenizer = loaded.tokenizer
        self.template = loaded.template or Template()
        self.max_len = max_len

    def too_long(self, ex: Example) -> str | None:
        """Why ``ex`` breaks the ``too_long`` rule, or None when it fits ``max_len``."""
        from limakit.records.template import render

        if self.max_len is None:
            return None
        if render(ex, self.tokenizer, self.template, max_len=self.max_len).trimmed:
            return f"rendered conversation exceeds max_len={self.max_len} tokens"
        return None

    def answer_tokens(self, ex: Example) -> int:
        """Tokens of the longest assistant turn of ``ex``, its end of turn included."""
        from limakit.records.template import encode_text

        turns = [m.content for m in ex.messages if m.role == "assistant"]
        return max((len(encode_text(self.tokenizer, t)) + 1 for t in turns), default=0)

    def longest_answer(self, examples: Iterable[Example]) -> tuple[int, str | None]:
        """The longest trained answer in tokens and the id of its example."""
        best, where = 0, None
        for ex in examples:
            n = self.answer_tokens(ex)
            if n > best:
                best, where = n, ex.id
        return best, where


def longest_trained_answer(loaded: LoadedModel, data: str | os.PathLike) -> tuple[int, str | None]:
    """The longest answer of a training file, in the ``loaded`` model's tokens (EOT included)."""
    return TokenLengths(loaded).longest_answer(read_examples(data, require_answer=True))
