"""The ``local`` backend: a transformers model read through its next-token probabilities.

No free text is generated or parsed: after the judge prompt and the opening ``[[`` of a verdict,
the label whose first token is most probable wins. A small model is a weak judge (it tends to
prefer one position), which the two-order pairwise protocol turns into ties rather than wins.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from limakit.core.errors import LimaError
from limakit.judging.config import JudgeConfig
from limakit.judging.reply import Reply

if TYPE_CHECKING:
    from limakit.models import LoadedModel

VERDICT_OPENING = "[["  # the prompts ask for [[label]]; the model continues right after it


class LocalJudge:
    """>>> judge = LocalJudge.from_config(JudgeConfig(backend="local", model="smollm2-135m"))  # doctest: +SKIP"""

    def __init__(self, cfg: JudgeConfig, loaded: LoadedModel) -> None:
        """``loaded``: the judge model, used where it is, its prompts in its template."""
        self.loaded = loaded
        self.model = loaded.model.eval()
        self.tok = loaded.tokenizer
        self.template = loaded.template
        self.max_prompt_tokens = cfg.max_prompt_tokens
        self._label_ids: dict[tuple[str, ...], list[int]] = {}

    @classmethod
    def from_config(cls, cfg: JudgeConfig) -> LocalJudge:
        """The judge ``cfg`` names: ``cfg.model`` loaded on ``cfg.device`` in ``cfg.dtype``."""
        from limakit.models import load_model_for

        return cls(cfg, load_model_for(cfg.model, cfg.device, cfg.dtype))

    def label_ids(self, labels: tuple[str, ...]) -> list[int]:
        """First token of each label as it follows ``[[``; they must differ to be told apart."""
        if labels not in self._label_ids:
            base = self.tok(VERDICT_OPENING, add_special_tokens=False)["input_ids"]
            ids = []
            for label in labels:
                full = self.tok(VERDICT_OPENING + label, add_special_tokens=False)["input_ids"]
                if full[: len(base)] != base or len(full) == len(base):
                    full = base + self.tok(label, add_special_tokens=False)["input_ids"]
                ids.append(full[len(base)])
            if len(set(ids)) != len(ids):
                raise LimaError(
                    f"local judge: labels {labels} share a first token in this tokenizer"
                )
            self._label_ids[labels] = ids
        return self._label_ids[labels]

    def choose(self, messages: list[dict], labels: tuple[str, ...]) -> Reply:
        return self.choose_batch([messages], labels)[0]

    def choose_batch(self, requests: list[list[dict]], labels: tuple[str, ...]) -> list[Reply]:
        """Judge several message lists in one forward pass (right-padded) on the model's device."""
        import torch

        from limakit.generation.engine import forward_last
        from limakit.records.example import Message
        from limakit.records.template import render_prompt

        opening = self.tok(VERDICT_OPENING, add_special_tokens=False)["input_ids"]
        seqs = []
        for messages in requests:
            msgs = [Message(m["role"], m["content"]) for m in messages]
            ids = render_prompt(msgs, self.tok, self.template) + opening
            # Keep the end: it holds the question to answer and the verdict opening.
            seqs.append(ids[-self.max_prompt_tokens :])
        label_ids = self.label_ids(labels)
        pad = self.tok.pad_token_id if self.tok.pad_token_id is not None else 0
        with torch.no_grad():
            _, logits = forward_last(self.model, seqs, pad)
        probs = torch.softmax(logits.float(), dim=-1)[:, label_ids].cpu()  # (n, labels)
        probs = probs / probs.sum(dim=-1, keepdim=True)
        replies = []
        for ids, row in zip(seqs, probs):
            table = {label: round(float(p), 6) for label, p in zip(labels, row)}
            best = labels[int(torch.argmax(row))]
            replies.append(Reply(text=f"[[{best}]]", prompt_tokens=len(ids), probs=table))
        return replies
