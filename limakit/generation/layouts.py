"""Plain-text prompt layouts for a pretrained model that has no chat format of its own.

A base model is not an assistant: prompted in a chat template it has never seen, it continues the
text (repeats the prompt, writes the next user turn). LIMA's comparison needs it used the way a
pretrained model is used, so two documented layouts are built in:

- ``plain``: the question and an answer header, as text a pretrained model has read many times::

      Question: How do tides work?

      Answer:

  The answer ends where the model starts a new ``Question:`` line (or at its own end of text).

- ``in-context``: in-context alignment after URIAL (Lin et al. 2023, "The Unlocking Spell on Base
  LLMs"): a fixed preamble that describes the assistant, then a few example exchanges in a
  fenced layout, then the query. The examples are drawn from the curated set, so the baseline
  sees the same style the fine-tuned model was trained on, without any training::

      # About this log
      ...preamble...

      # Query:
      ```
      <question>
      ```

      # Answer:
      ```
      <answer>
      ```

  The answer ends where the model starts the next ``# Query:`` (the closing fence is dropped).

Both layouts are text only: no special token but the tokenizer's own BOS.

>>> PLAIN.render([Message("user", "Hi?")])
'Question: Hi?\\n\\nAnswer:'
"""

from __future__ import annotations

from dataclasses import dataclass

from limakit.records.example import Example, Message

PREAMBLE = (
    "# About this log\n\n"
    "Below are exchanges between a person and an AI assistant. The person writes each request "
    'under "# Query:" and the assistant replies under "# Answer:". The assistant is helpful, '
    "accurate and honest. It answers the request directly, gives the details and steps that "
    "matter, organises longer answers with short paragraphs or lists, says so when it is not "
    "sure, and politely declines requests that could cause harm, explaining why. Each answer is "
    "complete in itself and ends when the request has been dealt with."
)


@dataclass(frozen=True)
class Layout:
    """One plain-text way of prompting a pretrained model: how turns are written, where an answer
    ends (``markers``: the model writing one of these has ended its answer), and what trailing
    text of an answer belongs to the layout, not to the answer (``closing``)."""

    name: str
    user: str  # the text around a user turn: "{text}" is the content
    assistant: str  # the text around an assistant turn
    answer_prefix: str  # what the prompt ends with: the model writes the answer from here
    markers: tuple[str, ...]
    preamble: str = ""
    closing: str = ""

    def render(self, messages: list[Message], shots: list[Example] = ()) -> str:
        """The prompt text for the last user turn of ``messages``, after the preamble and the
        example exchanges ``shots`` (each a user turn and its answer).

        >>> IN_CONTEXT.render([Message("user", "Why?")]).endswith('# Query:\\n```\\nWhy?\\n```\\n\\n# Answer:\\n```\\n')
        True
        """
        parts = [self.preamble + "\n\n"] if self.preamble else []
        for ex in shots:
            parts += [self._turn(m) for m in ex.messages if m.role in ("user", "assistant")]
        parts += [self._turn(m) for m in messages if m.role in ("user", "assistant")]
        return "".join(parts) + self.answer_prefix

    def _turn(self, m: Message) -> str:
        form = self.user if m.role == "user" else self.assistant
        return form.replace("{text}", m.content.strip())

    def answer(self, text: str) -> str:
        """The answer without the layout's closing text (a closing fence) and outer spaces."""
        text = text.strip()
        if self.closing and text.endswith(self.closing):
            text = text[: -len(self.closing)]
        return text.strip()


PLAIN = Layout(
    name="plain",
    user="Question: {text}\n\n",
    assistant="Answer: {text}\n\n",
    answer_prefix="Answer:",
    markers=("\nQuestion:",),
)

IN_CONTEXT = Layout(
    name="in-context",
    user="# Query:\n```\n{text}\n```\n\n",
    assistant="# Answer:\n```\n{text}\n```\n\n",
    answer_prefix="# Answer:\n```\n",
    markers=("# Query:", "# Answer:"),
    preamble=PREAMBLE,
    closing="```",
)

LAYOUTS = {layout.name: layout for layout in (PLAIN, IN_CONTEXT)}


def pick_shots(examples: list[Example], k: int = 3, max_chars: int = 1200, seed: int = 0):
    """``k`` single-turn examples for the in-context layout, drawn (seeded) among those whose
    answer has at most ``max_chars`` characters, so the prompt stays short; in the set's order.

    >>> exs = [Example([Message("user", f"q{i}"), Message("assistant", "a" * i)]) for i in (1, 5, 9)]
    >>> [len(e.answer) for e in pick_shots(exs, k=2, max_chars=6)]
    [1, 5]
    """
    import random

    fit = [
        ex
        for ex in examples
        if len(ex.messages) == 2
        and ex.messages[-1].role == "assistant"
        and len(ex.messages[-1].content) <= max_chars
    ]
    picked = random.Random(f"{seed}:in-context").sample(range(len(fit)), min(k, len(fit)))
    return [fit[i] for i in sorted(picked)]
