"""LIMA's decoding settings, as a typed config with the paper's values as defaults."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from limakit.core.config import Config


class DecodeConfig(Config):
    """How answers are sampled. Defaults are the paper's (LIMA section 2.2 / 3).

    ``top_p`` 0 keeps only the most likely token, which is greedy decoding: it is stored as such
    (temperature 0, top_p 1), so the engine, vLLM and the recorded settings all agree.

    >>> DecodeConfig().top_p, DecodeConfig(temperature=0).greedy
    (0.9, True)
    >>> c = DecodeConfig(top_p=0); (c.temperature, c.top_p, c.greedy)
    (0.0, 1.0, True)
    """

    temperature: float = Field(
        0.7, ge=0.0, description="Softmax temperature; 0 means greedy (argmax) decoding."
    )
    top_p: float = Field(
        0.9,
        ge=0.0,
        le=1.0,
        description="Nucleus sampling: keep the smallest set of tokens with this mass; 0 means "
        "greedy decoding (like temperature 0).",
    )
    repetition_penalty: float = Field(
        1.2,
        gt=0.0,
        description="Divides positive (multiplies negative) logits of tokens already *generated* "
        "in this answer; prompt tokens are not penalised. 1.0 turns it off.",
    )
    max_new_tokens: int = Field(2048, ge=1, description="Answers stop here at the latest.")
    template: Literal["auto", "own", "limakit", "plain", "in-context"] = Field(
        "auto",
        description="Chat format of `lima generate`: limakit's (limakit checkpoints, base models "
        "without a chat template), the model's own chat template (own: e.g. an instruct "
        "baseline, stopping at its own end-of-turn tokens), or auto (limakit's for a limakit "
        "checkpoint or a model without a template, the model's own otherwise). For a "
        "pretrained model used as one: plain (Question:/Answer: text) or in-context (URIAL's "
        "in-context alignment: a preamble and the example exchanges of `shots`); see "
        "limakit.generation.layouts.",
    )
    shots: str | None = Field(
        None,
        description="Example exchanges (limakit JSONL) shown before the prompt by the "
        "in-context template.",
    )

    @model_validator(mode="before")
    @classmethod
    def _top_p_zero_is_greedy(cls, data: Any) -> Any:
        if isinstance(data, dict):
            top_p = data.get("top_p")
            if isinstance(top_p, (int, float)) and not isinstance(top_p, bool) and top_p == 0:
                data = {**data, "temperature": 0.0, "top_p": 1.0}
        return data

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0
