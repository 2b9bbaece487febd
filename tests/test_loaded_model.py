"""One loader decides a model's runtime facts; the template travels with the checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from limakit.core.errors import LimaError
from limakit.models import LoadedModel, attach, load_model_for, resolve_runtime, saved_template
from limakit.records.example import Message
from limakit.records.template import (
    TEMPLATE_FILE,
    Template,
    read_template,
    render_prompt,
    save_tokenizer,
)

CUSTOM = Template(
    eot="<|end_of_turn|>",
    headers={"system": "### System:\n", "user": "### Human:\n", "assistant": "### Bot:\n"},
)


def _fresh_tokenizer(smollm2_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smollm2_dir)


class _Accelerator:
    is_main_process, process_index, num_processes = True, 0, 1

    def wait_for_everyone(self) -> None:
        pass


class _Config:
    def save(self, path: Path) -> None:
        path.write_text("model: tiny\n")


def _checkpoint(smollm2_dir, dest: Path, template: Template) -> Path:
    """A checkpoint written the way training writes one."""
    from limakit.training.checkpoint import save_checkpoint
    from tests.conftest import make_tiny_model

    tok = _fresh_tokenizer(smollm2_dir)
    model = make_tiny_model(tok)
    attach(tok, model, template)
    save_checkpoint(dest, _Accelerator(), model.save_pretrained, tok, _Config(), {"global_step": 1},
                    template=template)  # fmt: skip
    return dest


def test_a_checkpoint_saved_with_custom_headers_reloads_with_the_same_template(
    smollm2_dir, tmp_path
):
    path = _checkpoint(smollm2_dir, tmp_path / "ckpt", CUSTOM)
    saved = json.loads((path / TEMPLATE_FILE).read_text())
    assert saved["eot"] == CUSTOM.eot and saved["headers"] == CUSTOM.headers
    assert read_template(path) == CUSTOM

    loaded = load_model_for(str(path), "cpu", "float32")
    assert loaded.template == CUSTOM  # the headers too, not only the EOT
    assert loaded.eot_id == loaded.tokenizer.convert_tokens_to_ids(CUSTOM.eot)
    assert saved_template(str(path)) == CUSTOM
    hi = [Message("user", "Hi")]
    text = loaded.tokenizer.decode(render_prompt(hi, loaded.tokenizer, loaded.template))
    assert "### Human:\nHi<|end_of_turn|>### Bot:\n" in text
    # Loaded again and saved again, the template is kept.
    again = tmp_path / "again"
    save_tokenizer(loaded.tokenizer, again, loaded.template)
    assert read_template(again) == CUSTOM
    # The template travels with the LoadedModel, not with the tokenizer: nothing remembers it
    # for that tokenizer object, so the same tokenizer without it renders the default format.
    plain = loaded.tokenizer.decode(render_prompt(hi, loaded.tokenizer))
    assert "<|user|>\nHi<|eot|><|assistant|>\n" in plain


def test_a_bad_template_file_is_an_error_naming_it(tmp_path):
    (tmp_path / TEMPLATE_FILE).write_text(json.dumps({"version": 99, "eot": "x", "headers": {}}))
    with pytest.raises(LimaError, match=TEMPLATE_FILE):
        read_template(tmp_path)


def test_the_loader_decides_device_dtype_template_and_eot_once(tiny_model_dir):
    from limakit.generation.engine import Engine

    loaded = load_model_for(tiny_model_dir, "cpu", "float32")
    assert loaded.device == torch.device("cpu") and loaded.dtype == torch.float32
    assert loaded.template == Template()
    assert loaded.eot_id == loaded.tokenizer.convert_tokens_to_ids("<|eot|>")
    assert next(loaded.model.parameters()).dtype == torch.float32
    engine = Engine(loaded, max_batch=2)
    assert (engine.device, engine.dtype, engine.eot_id) == (
        loaded.device,
        loaded.dtype,
        loaded.eot_id,
    )
    # A loaded pair is wrapped where it is, with the same facts.
    pair = LoadedModel.of(loaded.model, loaded.tokenizer)
    assert (pair.device, pair.dtype, pair.eot_id, pair.template) == (
        loaded.device,
        loaded.dtype,
        loaded.eot_id,
        loaded.template,
    )


def test_resolve_runtime_decides_auto_and_refuses_unknown_names():
    cpu = resolve_runtime("cpu", torch.float32)
    assert (cpu.device, cpu.dtype_name, cpu.dtype) == (
        torch.device("cpu"),
        "float32",
        torch.float32,
    )
    assert resolve_runtime("cpu", "auto").dtype_name in ("bfloat16", "float32")
    assert resolve_runtime("cpu", "fp32").dtype == torch.float32
    with pytest.raises(LimaError, match="unknown dtype"):
        resolve_runtime("cpu", "fp8")
    with pytest.raises(LimaError, match="unknown device"):
        resolve_runtime("gpu0", "auto")
