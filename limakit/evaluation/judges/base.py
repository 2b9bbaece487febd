"""What every judge backend returns for one call."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Reply:
    """One judge call. ``error`` is set when no reply could be had (after retries)."""

    text: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    retries: int = 0
    error: str | None = None
    probs: dict[str, float] = field(default_factory=dict)  # local judge: label -> probability
