"""Fixtures for generation tests: the tiny random model, optionally nudged towards the EOT."""

from __future__ import annotations

import pytest
import torch

from limakit.records.example import Example, Message


def boost_eot(model, tokenizer, amount: float = 8.0):
    """Add ``amount`` to the EOT logit so a random model ends answers early, at random lengths."""
    from limakit.records.template import Template

    eot = tokenizer.convert_tokens_to_ids(Template.from_tokenizer(tokenizer).eot)

    def hook(_module, _inputs, logits):
        logits[..., eot] += amount
        return logits

    return model.get_output_embeddings().register_forward_hook(hook)


def sharpen(model, factor: float = 40.0):
    """Scale the logits so a random model's next-token distribution has clear gaps.

    A random tiny model's logits are nearly uniform over the whole vocabulary: top-p then samples
    among tens of thousands of tokens whose probabilities differ by less than float rounding, so
    two runs that batch a prompt differently (a resumed run, say) may pick different tokens.
    Sharpened, the same seed picks the same token whatever the batch around it.
    """

    def hook(_module, _inputs, logits):
        return logits * factor

    return model.get_output_embeddings().register_forward_hook(hook)


@pytest.fixture
def tiny(tiny_model_dir):
    """A fresh (model, tokenizer) pair of the tiny random Llama, fp32."""
    from limakit.models import load

    model, tok = load(tiny_model_dir, torch.float32)
    return model, tok


def prompts(n: int) -> list[Example]:
    """``n`` prompts of very different lengths, some multi-turn, with ids p0..p{n-1}."""
    out = []
    for i in range(n):
        question = f"Question {i}: " + "tell me about the sea and the sky. " * (1 + (i * 7) % 23)
        messages = [Message("user", question)]
        if i % 3 == 2:
            messages = [
                Message("system", "Be brief."),
                Message("user", "Hi"),
                Message("assistant", "Hello!"),
                *messages,
            ]
        out.append(Example(messages=messages, source="test", id=f"p{i}", meta={"k": i}))
    return out
