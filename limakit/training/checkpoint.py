"""Checkpoints: ``RUN_DIR/checkpoints/epoch-N/`` (kept) and ``checkpoints/latest/`` (mid-epoch).

Each holds safetensors weights and the tokenizer (EOT + chat template) from ``save_pretrained``,
with ``limakit_template.json`` (the whole template: EOT and role headers) beside them, so
``limakit.models.load_model_for(path)`` and plain transformers load it; ``train_config.yaml`` (the
resolved config); ``trainer_state.pt`` (optimizer, scheduler, step, data position, model
fingerprint, adapter weights under LoRA) and ``rng-rank{R}.pt`` per process; ``checkpoint.json``
(step, epoch), written last, marks it complete and is all :func:`latest_checkpoint` reads. A
checkpoint is built in a temporary folder and renamed into place, so a killed run never leaves half
of one; :func:`recover_interrupted` finishes a replacement that a kill cut between its two renames.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any

import torch

from limakit.core.errors import LimaError
from limakit.core.faults import crash_point
from limakit.core.files import give_usual_mode, write_json
from limakit.records.template import Template, save_tokenizer

STATE = "trainer_state.pt"
META = "checkpoint.json"  # written last: a folder without it is incomplete


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
    *,
    template: Template | None,
) -> None:
    """Write a checkpoint to ``dest`` atomically; every process calls this (each saves its RNG).

    ``write_model(folder)`` saves the (merged, consolidated) weights with ``save_pretrained``;
    ``template`` (the trained model's, from its ``LoadedModel``) is saved beside the tokenizer.
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
        save_tokenizer(tokenizer, tmp, template)  # limakit_template.json: the template travels
        config.save(tmp / "train_config.yaml")
        torch.save(state, tmp / STATE)
        meta = {k: state[k] for k in ("global_step", "epoch", "step_in_epoch") if k in state}
        write_json(tmp / META, meta)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        give_usual_mode(
            tmp
        )  # safetensors writes its files private (0600); outputs follow the umask
        old = dest.parent / f".{dest.name}.old"
        shutil.rmtree(old, ignore_errors=True)
        if dest.exists():
            dest.rename(old)
        crash_point(f"checkpoint:{state.get('global_step')}:between-renames")
        tmp.rename(dest)
        shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()


def _step(folder: Path) -> int | None:
    """Optimizer steps done in a complete checkpoint folder; None when it is incomplete."""
    meta = folder / META
    if meta.exists():
        try:
            return int(json.loads(meta.read_text())["global_step"])
        except (ValueError, KeyError, TypeError):
            return None
    if (folder / STATE).exists() and not folder.name.startswith("."):
        # Checkpoints written before the metadata file existed: read the (large) state once.
        return torch.load(folder / STATE, map_location="cpu", weights_only=False)["global_step"]
    return None


def recover_interrupted(run_dir: Path) -> list[str]:
    """Finish checkpoint replacements a kill cut short; returns what was done, for the log.

    Replacing ``NAME`` renames it to ``.NAME.old``, then ``.NAME.tmp`` to ``NAME``. Killed between
    the two, ``NAME`` is missing: the complete ``.NAME.tmp`` (newer) or else ``.NAME.old`` takes its
    place. Leftovers beside a present ``NAME`` are removed.
    """
    root = run_dir / "checkpoints"
    done: list[str] = []
    for side in sorted(root.glob(".*.tmp")) + sorted(root.glob(".*.old")):
        name = side.name[1:].rsplit(".", 1)[0]
        dest = root / name
        if not dest.exists() and _step(side) is not None:
            side.rename(dest)
            done.append(f"restored checkpoints/{name} from {side.name}")
        elif side.exists():
            shutil.rmtree(side)
            done.append(f"removed incomplete {side.name}")
    return done


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The complete checkpoint with the most optimizer steps done, or None when there is none.

    Reads each checkpoint's small ``checkpoint.json``, never its optimizer state.
    """
    best, best_step = None, -1
    for d in sorted((run_dir / "checkpoints").glob("*")):
        if d.name.startswith(".") or not d.is_dir():
            continue
        step = _step(d)
        if step is not None and step > best_step:
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
