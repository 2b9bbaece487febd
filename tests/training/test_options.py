"""LoRA (merged on export), gradient checkpointing and bf16 autocast run end to end."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file
from training.helpers import write_data

from limakit.core.config import load_config
from limakit.training import TrainConfig, train
from limakit.training.model import prepare_model


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


def _run(tmp_path, tiny_model_dir, name, *extra, resume=False):
    import json

    data = write_data(tmp_path / "d.jsonl", 8)
    overrides = [
        f"model={tiny_model_dir}",
        f"data={data}",
        "epochs=2",
        "global_batch=4",
        "micro_batch=1",
        "max_len=64",
        "dropout_top=0",
        "threads=1",
        *extra,
    ]
    run = train(load_config(TrainConfig, None, overrides), tmp_path / name, resume=resume)
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return run, [r["loss"] for r in rows]


def test_bf16_weights_with_float32_masters(tmp_path, tiny_model_dir):
    from transformers import AutoModelForCausalLM

    fast = ("lr=1e-3", "final_lr=1e-3")
    _, ref = _run(tmp_path, tiny_model_dir, "fp32", *fast)
    run, got = _run(tmp_path, tiny_model_dir, "bf16", "dtype=bfloat16", *fast)
    assert got[-1] < got[0]  # it learns
    for a, b in zip(ref, got, strict=True):  # and follows the float32 trajectory
        assert a == pytest.approx(b, rel=3e-2)
    final = run / "checkpoints" / "epoch-2"
    weights = load_file(final / "model.safetensors")
    assert weights["model.norm.weight"].dtype == torch.bfloat16
    masters = torch.load(final / "trainer_state.pt", weights_only=False)["master"]
    model = prepare_model(load_config(TrainConfig, None, [f"model={tiny_model_dir}"])).model
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert len(masters) == len(names) and all(m.dtype == torch.float32 for m in masters)

    # A capped run resumed to the end matches the uninterrupted one exactly (masters restored).
    _run(tmp_path, tiny_model_dir, "cut", "dtype=bfloat16", "max_steps=3", *fast)
    resumed, _ = _run(tmp_path, tiny_model_dir, "cut", "dtype=bfloat16", *fast, resume=True)
    again = torch.load(resumed / "checkpoints" / "epoch-2" / "trainer_state.pt", weights_only=False)
    assert all(torch.equal(a, b) for a, b in zip(masters, again["master"], strict=True))

    # Why the masters exist: LIMA-sized steps round away when applied to bf16 weights directly.
    slow = ("lr=1e-6", "final_lr=1e-6", "epochs=1")
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.bfloat16).state_dict()
    key = "model.layers.0.mlp.up_proj.weight"
    kept, _ = _run(tmp_path, tiny_model_dir, "slow-m", "dtype=bfloat16", *slow)
    lost, _ = _run(
        tmp_path, tiny_model_dir, "slow-x", "dtype=bfloat16", "master_weights=false", *slow
    )
    state = torch.load(kept / "checkpoints" / "epoch-1" / "trainer_state.pt", weights_only=False)
    master = dict(zip(names, state["master"], strict=True))[key]
    assert (master != base[key].float()).float().mean() > 0.9  # the masters moved...
    bf16 = load_file(lost / "checkpoints" / "epoch-1" / "model.safetensors")[key]
    assert (bf16 != base[key]).float().mean() < 0.05  # ...the bf16 weights alone barely did


def test_eot_init_from_the_config_reaches_the_model(tmp_path, smollm2_tokenizer):
    from transformers import AutoTokenizer

    from tests.conftest import make_tiny_model

    # A base model without the limakit format, so the trainer adds the EOT row itself.
    base = AutoTokenizer.from_pretrained(smollm2_tokenizer.name_or_path)
    make_tiny_model(base).save_pretrained(tmp_path / "base")
    base.save_pretrained(tmp_path / "base")
    eos = base.eos_token_id
    for init in ("eos", "mean"):
        cfg = load_config(TrainConfig, None, [f"model={tmp_path / 'base'}", f"eot_init={init}"])
        loaded = prepare_model(cfg)
        model, tok = loaded.model, loaded.tokenizer
        emb = model.get_input_embeddings().weight
        eot = tok.eos_token_id  # attach() made the new EOT the tokenizer's EOS
        assert eot == len(base) and eos < eot
        assert torch.equal(emb[eot], emb[eos]) == (init == "eos")
        if init == "mean":
            assert torch.allclose(emb[eot], emb[:eot].mean(0))


def _small(tmp_path, tiny_model_dir, *extra: str) -> TrainConfig:
    data = write_data(tmp_path / "d.jsonl", 8)
    base = [f"model={tiny_model_dir}", f"data={data}", "epochs=1", "global_batch=4"]
    base += ["micro_batch=1", "max_len=64", "dropout_top=0", "threads=1", "save_epochs=[]"]
    return load_config(TrainConfig, None, [*base, *extra])


def test_auto_dtype_and_compile_are_decided_once_and_recorded(tmp_path, tiny_model_dir):
    from limakit.models import bf16_is_fast

    cfg = _small(tmp_path, tiny_model_dir, "dtype=auto")
    assert cfg.compile == "auto"  # the default
    run = train(cfg, tmp_path / "run")
    saved = load_config(TrainConfig, run / "train_config.yaml")
    assert saved.dtype == ("bfloat16" if bf16_is_fast("cpu") else "float32")
    assert saved.compile is torch.cuda.is_available()  # compiled layers on CUDA only


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks kernels a CPU cannot run")
@pytest.mark.parametrize(
    "kernel, message",
    [
        ("varlen", "packed_attention=varlen needs a CUDA device"),
        ("flex", "packed_attention=flex trains on CUDA only"),
    ],
)
def test_a_packed_kernel_the_machine_cannot_run_is_a_clear_error(
    tmp_path, tiny_model_dir, kernel, message
):
    """The config field reaches the attention: asking for a GPU-only kernel on a CPU says so."""
    from limakit.core.errors import LimaError

    cfg = _small(tmp_path, tiny_model_dir, f"packed_attention={kernel}", "micro_batch=4")
    with pytest.raises(LimaError, match=message):
        train(cfg, tmp_path / "run")
