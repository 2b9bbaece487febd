"""Checkpoints: ``RUN_DIR/checkpoints/epoch-N/`` (kept) and ``checkpoints/latest/`` (mid-epoch).

Each holds safetensors weights and the tokenizer (EOT + chat template) from ``save_pretrained``,
so ``limakit.models.load(path)`` and plain transformers load it; ``train_config.yaml`` (the
resolved config); ``trainer_state.pt`` (optimizer, scheduler, step, data position, model
fingerprint, adapter weights under LoRA) and ``rng-rank{R}.pt`` per process. A checkpoint is
built in a temporary folder and renamed into place, so a killed run never leaves half of one.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path
from typing import Any

import torch

from limakit.errors import LimaError

STATE = "trainer_state.pt"


def model_fingerprint(model) -> dict[str, Any]:
    """What must match for a checkpoint's weights to belong to this model."""
    c = model.config
    return {
        "model_type": getattr(c, "model_type", None),
        "hidden_size": getattr(c, "hidden_size", getattr(c, "n_embd", None)),
        "layers": getattr(c, "num_hidden_layers", getattr(c, "n_layer", None)),
        "vocab": model.get_input_embeddings().weight.shape[0],
        "params": sum(p.numel() for p in model.parameters()),
    }


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(
    dest: Path,
    accelerator,
    write_model,
    tokenizer,
    config,
    state: dict[str, Any],
    optimizer_shard: dict | None = None,
) -> None:
    """Write a checkpoint to ``dest`` atomically; every process calls this (each saves its RNG).

    ``write_model(folder)`` saves the (merged, consolidated) weights with ``save_pretrained``.
    ``optimizer_shard`` (FSDP/DeepSpeed) is this process's part of the optimizer state, saved as
    ``optimizer-rank{R}-of-{N}.pt``; resuming needs the same number of processes.
    """
    tmp = dest.parent / f".{dest.name}.tmp"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    write_model(tmp)  # collective under FSDP/DeepSpeed; only the main process writes files
    rank, world = accelerator.process_index, accelerator.num_processes
    torch.save(rng_state(), tmp / f"rng-rank{rank}.pt")
    if optimizer_shard is not None:
        torch.save(optimizer_shard, tmp / f"optimizer-rank{rank}-of-{world}.pt")
    if accelerator.is_main_process:
        tokenizer.save_pretrained(tmp)
        config.save(tmp / "train_config.yaml")
        torch.save(state, tmp / STATE)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        old = dest.parent / f".{dest.name}.old"
        shutil.rmtree(old, ignore_errors=True)
        if dest.exists():
            dest.rename(old)
        tmp.rename(dest)
        shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The checkpoint with the most optimizer steps done, or None when there is none."""
    best, best_step = None, -1
    for d in sorted((run_dir / "checkpoints").glob("*")):
        f = d / STATE
        if d.name.startswith(".") or not f.exists():
            continue
        step = torch.load(f, map_location="cpu", weights_only=False)["global_step"]
        if step > best_step:
            best, best_step = d, step
    return best


def load_state(ckpt: Path, fingerprint: dict[str, Any], process_index: int) -> dict[str, Any]:
    """The trainer state of ``ckpt`` (its RNG applied); refuses a checkpoint of another model."""
    state = torch.load(ckpt / STATE, map_location="cpu", weights_only=False)
    saved = state.get("fingerprint")
    if saved != fingerprint:
        raise LimaError(
            f"{ckpt}: checkpoint was made from a different model ({saved}); this run's model is "
            f"{fingerprint}. Use the same 'model' as the original run or a new --out folder"
        )
    rng = ckpt / f"rng-rank{process_index}.pt"
    if rng.exists():
        set_rng_state(torch.load(rng, map_location="cpu", weights_only=False))
    return state


def load_sharded_optimizer(ckpt: Path, rank: int, world: int) -> dict:
    """This process's optimizer state from a sharded (FSDP/DeepSpeed) checkpoint."""
    f = ckpt / f"optimizer-rank{rank}-of-{world}.pt"
    if not f.exists():
        found = sorted(p.name for p in ckpt.glob("optimizer-rank*.pt")) or ["none"]
        raise LimaError(
            f"{ckpt}: no optimizer shard for process {rank} of {world} (found: "
            f"{', '.join(found[:4])}); resume with the number of processes that saved it"
        )
    return torch.load(f, map_location="cpu", weights_only=False)


def load_weights(model, ckpt: Path) -> None:
    """Copy a checkpoint's safetensors weights into ``model`` (same architecture)."""
    from safetensors.torch import load_file

    files = sorted(ckpt.glob("*.safetensors"))
    if not files:
        raise LimaError(f"{ckpt}: no safetensors weights")
    sd: dict[str, torch.Tensor] = {}
    for f in files:
        sd.update(load_file(f))
    missing, unexpected = model.load_state_dict(sd, strict=False)
    # Tied output embeddings are stored once; anything else missing is a real mismatch.
    missing = [k for k in missing if "lm_head" not in k]
    if missing or unexpected:
        raise LimaError(
            f"{ckpt}: weights do not match the model (missing {missing[:3]}, "
            f"unexpected {unexpected[:3]})"
        )
