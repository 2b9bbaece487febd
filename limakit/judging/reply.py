"""What every judge backend returns for one call, and the form a reply takes in the cache."""

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

    def cached(self) -> dict:
        """The reply as the cache stores it: what the judge said, never a failed call.

        >>> Reply(text="[[A]]", prompt_tokens=90).cached()
        {'text': '[[A]]', 'prompt_tokens': 90, 'completion_tokens': 0}
        """
        if self.error is not None or not isinstance(self.text, str):
            raise ValueError(f"not a judge reply, so not cached: {self!r:.200}")
        out = {
            "text": self.text,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
        }
        return {**out, "probs": self.probs} if self.probs else out

    @classmethod
    def from_cache(cls, value: object) -> Reply | None:
        """A reply served from the cache (it costs nothing now: no tokens, no retries), or None
        when the stored value is no reply, as an older version could store whatever a faulty
        server sent: the call is then made again.

        >>> Reply.from_cache({"text": "[[A]]", "prompt_tokens": 90}).text
        '[[A]]'
        >>> Reply.from_cache({"text": 7}) is None
        True
        """
        if not isinstance(value, dict) or not isinstance(value.get("text"), str):
            return None
        probs = value.get("probs") or {}
        if not isinstance(probs, dict) or not all(
            isinstance(p, int | float) and not isinstance(p, bool) for p in probs.values()
        ):
            return None
        return cls(text=value["text"], probs=probs)
