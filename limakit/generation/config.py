"""LIMA's decoding settings, as a typed config with the paper's values as defaults."""

from __future__ import annotations

from pydantic import Field

from limakit.config import Config


class DecodeConfig(Config):
    """How answers are sampled. Defaults are the paper's (LIMA section 2.2 / 3).

    >>> DecodeConfig().top_p, DecodeConfig(temperature=0).greedy
    (0.9, True)
    """

    temperature: float = Field(
        0.7, ge=0.0, description="Softmax temperature; 0 means greedy (argmax) decoding."
    )
    top_p: float = Field(
        0.9,
        gt=0.0,
        le=1.0,
        description="Nucleus sampling: keep the smallest set of tokens with this mass.",
    )
    repetition_penalty: float = Field(
        1.2,
        gt=0.0,
        description="Divides positive (multiplies negative) logits of tokens already *generated* "
        "in this answer; prompt tokens are not penalised. 1.0 turns it off.",
    )
    max_new_tokens: int = Field(2048, ge=1, description="Answers stop here at the latest.")

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0
