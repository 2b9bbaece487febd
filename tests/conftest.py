"""Shared fixtures: the packaged SmolLM2 (real tokenizer and weights) and tiny random models.

Everything runs offline: the hub is switched off before transformers is imported.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture(scope="session")
def smollm2_dir() -> str:
    """Folder of the plain (dequantised) packaged SmolLM2-135M; built once per machine."""
    from limakit.models import resolve

    return resolve("smollm2-135m")


@pytest.fixture(scope="session")
def smollm2_tokenizer(smollm2_dir):
    """A fresh SmolLM2 tokenizer with the limakit format (EOT) attached."""
    from transformers import AutoTokenizer

    from limakit.models import attach

    tok = AutoTokenizer.from_pretrained(smollm2_dir)
    attach(tok)
    return tok


def make_tiny_model(tokenizer, *, layers: int = 2, hidden: int = 64, seed: int = 0):
    """A random-weight Llama-style model over ``tokenizer``'s vocabulary, for fast mechanics tests."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return LlamaForCausalLM(config)


def make_tiny_gemma3(tokenizer, window: int, seed: int = 0):
    """A random two-layer Gemma 3 (one sliding-window layer of ``window`` keys, one global) with
    ``tokenizer`` and limakit's format attached, fp32."""
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    from limakit.models import attach

    torch.manual_seed(seed)
    config = Gemma3TextConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, head_dim=32, sliding_window=window,
        layer_types=["sliding_attention", "full_attention"], max_position_embeddings=2048,
        pad_token_id=tokenizer.pad_token_id or 0, attn_implementation="sdpa",
    )  # fmt: skip
    model = Gemma3ForCausalLM(config).eval()
    attach(tokenizer, model)
    return model


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, smollm2_tokenizer) -> str:
    """A saved tiny random Llama with the SmolLM2 tokenizer and limakit format (its template file
    beside it, as a trained checkpoint has): loads like any model."""
    from limakit.models import attach
    from limakit.records.template import Template, save_tokenizer

    path = tmp_path_factory.mktemp("tiny-llama")
    model = make_tiny_model(smollm2_tokenizer)
    attach(smollm2_tokenizer, model)
    model.save_pretrained(path)
    save_tokenizer(smollm2_tokenizer, path, Template())
    return str(path)
