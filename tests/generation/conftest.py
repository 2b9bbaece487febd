"""Fixtures for generation tests: the tiny random model, optionally nudged towards the EOT."""

from __future__ import annotations

import pytest

from limakit.records.example import Example, Message

from ..conftest import make_tiny_model

IM_START, IM_END, ENDOFTEXT = 1, 2, 0  # SmolLM2's ChatML tokens


def boost_eot(model, tokenizer, amount: float = 8.0):
    """Add ``amount`` to the EOT logit so a random model ends answers early, at random lengths."""
    from limakit.records.template import Template

    eot = tokenizer.convert_tokens_to_ids(Template().eot)

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


def script(model, ids: list[int]):
    """Make ``model`` write ``ids`` from the start of every answer (one sequence at a time): the
    step counter restarts at each prefill (a forward pass over more than one token)."""
    state = {"at": 0}

    def before(_module, _args, kwargs):
        ids_in = kwargs.get("input_ids")
        if ids_in is not None and ids_in.shape[1] > 1:
            state["at"] = 0

    def after(_module, _args, _kwargs, out):
        token = ids[min(state["at"], len(ids) - 1)]
        state["at"] += 1
        out.logits[..., :] = -1e4
        out.logits[..., token] = 1e4
        return out

    model.register_forward_pre_hook(before, with_kwargs=True)
    model.register_forward_hook(after, with_kwargs=True)


@pytest.fixture
def tiny(tiny_model_dir):
    """A fresh :class:`~limakit.models.LoadedModel` of the tiny random Llama, fp32 on the CPU
    (``tiny.pair``: its model and tokenizer)."""
    from limakit.models import load_model_for

    return load_model_for(tiny_model_dir, "cpu", "float32")


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


@pytest.fixture(scope="module")
def raw_tokenizer(smollm2_dir):
    """The SmolLM2-Instruct tokenizer as it ships: ChatML chat template, no limakit EOT."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(smollm2_dir)
    assert tok.convert_ids_to_tokens([IM_START, IM_END]) == ["<|im_start|>", "<|im_end|>"]
    return tok


@pytest.fixture(scope="module")
def chatml_dir(tmp_path_factory, raw_tokenizer) -> str:
    """A saved tiny random model with the ChatML tokenizer, whose generation config ends a
    sequence at <|im_end|> or <|endoftext|>."""
    path = tmp_path_factory.mktemp("tiny-chatml")
    model = make_tiny_model(raw_tokenizer, seed=1)
    model.generation_config.eos_token_id = [IM_END, ENDOFTEXT]
    model.save_pretrained(path)
    raw_tokenizer.save_pretrained(path)
    return str(path)
