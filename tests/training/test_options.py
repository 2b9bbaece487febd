"""LoRA (merged on export), gradient checkpointing and bf16 autocast run end to end."""

from __future__ import annotations

import torch
from safetensors.torch import load_file
from training.helpers import write_data

from limakit.config import load_config
from limakit.training import TrainConfig, train


def test_lora_with_checkpointing_and_bf16_exports_merged_weights(tmp_path, tiny_model_dir):
    from transformers import AutoModelForCausalLM

    data = write_data(tmp_path / "d.jsonl", 8)
    overrides = [
        f"model={tiny_model_dir}",
        f"data={data}",
        "epochs=1",
        "global_batch=4",
        "micro_batch=2",
        "max_len=64",
        "lr=1e-3",
        "final_lr=1e-4",
        "lora.enabled=true",
        "lora.r=4",
        "grad_checkpointing=true",
        "autocast=true",
        "threads=1",
    ]
    run = train(load_config(TrainConfig, None, overrides), tmp_path / "run")
    ckpt = run / "checkpoints" / "epoch-1"
    merged = load_file(ckpt / "model.safetensors")
    assert not any("lora" in k for k in merged)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir).state_dict()
    changed = [k for k in merged if "q_proj" in k and not torch.equal(merged[k], base[k])]
    assert changed  # the adapters were merged into the exported weights
    assert torch.equal(merged["model.norm.weight"], base["model.norm.weight"])  # frozen
    model = AutoModelForCausalLM.from_pretrained(ckpt)  # plain transformers, no peft needed
    assert model.config.num_hidden_layers == 2
