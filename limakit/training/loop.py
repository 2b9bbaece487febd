"""The LIMA training loop: one function, top to bottom.

>>> from limakit.core.config import load_config
>>> cfg = load_config(TrainConfig, "configs/demo-train.yaml")  # doctest: +SKIP
>>> train(cfg, "runs/demo")  # doctest: +SKIP
PosixPath('runs/demo')
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from limakit.core.console import note, warn
from limakit.core.errors import LimaError
from limakit.core.faults import crash_point
from limakit.core.files import is_blank, write_json
from limakit.records.template import Template
from limakit.training.attention import NAME as PACKED
from limakit.training.batching import (
    Encoded,
    collate,
    encoded,
    epoch_order,
    plan_micro_batches,
    step_groups,
    to_device,
)
from limakit.training.checkpoint import (
    latest_checkpoint,
    load_sharded_optimizer,
    load_state,
    load_weights,
    model_fingerprint,
    recover_interrupted,
    save_checkpoint,
)
from limakit.training.config import TrainConfig
from limakit.training.model import LossModel, inner_model, lr_factor, prepare_model
from limakit.training.precision import MasterWeights
from limakit.training.progress import Reporter


@dataclass
class DataStats:
    """What reading the training data found: examples read, trimmed to ``max_len``, left out."""

    examples: int = 0
    trimmed: int = 0
    untrained: int = 0


def check_data(path: str | Path) -> None:
    """Refuse missing, folder or empty training data at once (before a model is loaded for it)."""
    if not Path(path).exists():
        raise LimaError(f"{path}: training data not found (set data=PATH)")
    if is_blank(path):  # a folder is refused here too, by name
        raise LimaError(f"{path}: empty file (no examples to train on)")


def encode(
    config: TrainConfig, tokenizer, stats: DataStats | None = None, template: Template | None = None
) -> list[Encoded]:
    """Render every example with ``template`` (the loaded model's; None: the default one); fail
    (or skip, if allowed) on untrained ones.

    ``stats`` (if given) gets the counts; examples trimmed to ``max_len`` are also reported.
    """
    from limakit.records.example import read_examples
    from limakit.records.template import render

    stats = stats if stats is not None else DataStats()
    check_data(config.data)
    out: list[Encoded] = []
    untrained: list[str] = []
    for n, ex in enumerate(read_examples(config.data, require_answer=True)):
        stats.examples += 1
        r = render(ex, tokenizer, template, max_len=config.max_len, **config.loss_options())
        stats.trimmed += r.trimmed
        item = encoded(len(out), r)
        if item.n_trained == 0:
            untrained.append(f"record {n + 1} (id {ex.id or '-'})")
            continue
        out.append(item)
    if stats.examples == 0:
        raise LimaError(f"{config.data}: empty file (no examples to train on)")
    stats.untrained = len(untrained)
    if untrained and not config.drop_untrained:
        raise LimaError(
            f"{config.data}: {len(untrained)} example(s) have no trained token after rendering "
            f"(train_on={config.train_on}, max_len={config.max_len}), e.g. "
            f"{', '.join(untrained[:5])}; fix the data or set drop_untrained=true"
        )
    if stats.trimmed:
        note(
            f"trimmed {stats.trimmed} of {stats.examples} example(s) to max_len={config.max_len} "
            "tokens (their ends are not trained)"
        )
    if untrained:
        note(f"skipped {len(untrained)} example(s) with no trained token")
    if not out:
        raise LimaError(f"{config.data}: no example with a trained token")
    return out


@contextlib.contextmanager
def cpu_threads(n: int | None):
    """torch's CPU thread count set to ``n`` (None: left as it is) inside, the caller's after.

    Yields the count in force: the number a run trains with, and records.
    """
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


def train(config: TrainConfig, out_dir: str | Path, resume: bool = False) -> Path:
    """Fine-tune ``config.model`` on ``config.data``; checkpoints go to ``out_dir/checkpoints``.

    A library call leaves the process as it found it: ``config.threads`` holds only while it runs
    (the CPU allocator policy of ``training/allocator.py`` is the ``lima`` command's to set).
    """
    with cpu_threads(config.threads) as threads:
        return _train(config, Path(out_dir), resume, threads)


def _train(config: TrainConfig, run: Path, resume: bool, threads: int) -> Path:
    from accelerate import Accelerator

    # Precision is our own explicit autocast below, not the Accelerator's: its state is a process-wide
    # singleton, and a second run in the same process with another setting would be refused.
    acc = Accelerator()
    world, rank = acc.num_processes, acc.process_index
    if config.dtype == "auto":  # decided once, here, and recorded in the run's config
        from limakit.models import auto_dtype_name

        config = config.model_copy(update={"dtype": auto_dtype_name("auto", acc.device)})
    if config.compile == "auto":
        config = config.model_copy(update={"compile": acc.device.type == "cuda"})
    if resume and acc.is_main_process:
        for line in recover_interrupted(run):
            note(line)
    acc.wait_for_everyone()
    ckpt = latest_checkpoint(run) if resume else None
    if resume and ckpt is None:
        note(f"no checkpoint under {run}; starting from scratch")
    if not resume and latest_checkpoint(run) is not None:
        raise LimaError(f"{run}: holds checkpoints already; pass --resume or use a new --out")

    check_data(config.data)
    torch.manual_seed(config.seed)
    loaded = prepare_model(config)
    model, tokenizer = loaded.model, loaded.tokenizer
    data_stats = DataStats()
    data = encode(config, tokenizer, data_stats, loaded.template)
    fingerprint = model_fingerprint(inner_model(model))
    steps_per_epoch = math.ceil(len(data) / config.global_batch)
    # The schedule spans the full run; max_steps only stops early, so a capped run resumes exactly.
    schedule_total = config.epochs * steps_per_epoch
    total = min(schedule_total, config.max_steps or schedule_total)

    sharded = acc.distributed_type.value in ("FSDP", "DEEPSPEED")
    if not sharded:
        # On the device before the masters and the optimizer state are made from its parameters:
        # they live where the parameters live. (FSDP/DeepSpeed place and shard it themselves.)
        model.to(acc.device)
    if config.dtype != "float32" and config.master_weights and sharded:
        raise LimaError(
            "master_weights=true keeps its own float32 copies, which FSDP/DeepSpeed shard on their "
            "own: use dtype=float32 with autocast=true (or the launcher's bf16 mixed precision)"
        )
    master = MasterWeights(model, enabled=config.dtype != "float32" and config.master_weights)
    # The fused kernel steps all parameters in one pass (4x faster than foreach on the CPU).
    fused = acc.device.type in ("cpu", "cuda") and acc.distributed_type.value != "DEEPSPEED"
    optimizer = torch.optim.AdamW(
        master.param_groups(config.weight_decay),
        lr=config.lr,
        betas=config.betas,
        eps=config.eps,
        fused=fused or None,
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, schedule_total, config.lr, config.final_lr, config.warmup)
    )
    start_epoch, start_step, global_step = 0, 0, 0
    if ckpt is not None:
        state = load_state(ckpt, fingerprint, rank)
        if state["n_examples"] != len(data):
            raise LimaError(
                f"{ckpt}: made with {state['n_examples']} examples, data has {len(data)}"
            )
        if "adapter" in state:
            model.load_state_dict(state["adapter"], strict=False)
        else:
            load_weights(inner_model(model), ckpt)
        if state.get("master"):
            master.load_state_dict(state["master"])  # exact float32 weights, not the bf16 export
        else:
            master.pull()
        if not sharded:  # a sharded optimizer's state is loaded after prepare(), per process
            optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_epoch, start_step, global_step = (
            state["epoch"],
            state["step_in_epoch"],
            state["global_step"],
        )
        if state.get("threads", threads) != threads and acc.device.type == "cpu":
            warn(
                f"{ckpt} was trained with threads={state['threads']}, this run uses "
                f"threads={threads}: CPU sums then round differently, so the rest of the run can "
                f"differ slightly from an uninterrupted one (set threads={state['threads']} to match)"
            )
    loss_model = LossModel(
        model,
        config.loss_chunk or (1024 if acc.device.type == "cpu" else 8192),
        direct_embedding_grad=world == 1,
        kernel=config.packed_attention,
    )
    wrapped, optimizer = acc.prepare(loss_model, optimizer)
    if ckpt is not None and sharded:
        optimizer.load_state_dict(load_sharded_optimizer(ckpt, rank, world))
    wrapped.train()
    impl = str(getattr(inner_model(model).config, "_attn_implementation", ""))
    with_mask = "flash" not in impl and impl != PACKED  # those read boundaries, not a dense mask
    # With activation checkpointing (lean memory), bf16 weight copies are made per use, not cached
    # for the whole micro-batch: half the float32 weights' size less at the peak.
    autocast = torch.autocast(
        acc.device.type,
        dtype=torch.bfloat16,
        enabled=config.autocast,
        cache_enabled=not config.grad_checkpointing,
    )

    def write_model(folder: Path) -> None:
        lm = acc.unwrap_model(wrapped).lm
        if config.lora.enabled:  # export merged weights; the adapter itself goes in the state
            import copy

            lm = copy.deepcopy(lm).merge_and_unload()
        if acc.is_main_process:
            lm.save_pretrained(folder)

    def checkpoint(name: str, epoch: int, step_in_epoch: int) -> None:
        state = {
            "global_step": global_step,
            "epoch": epoch,
            "step_in_epoch": step_in_epoch,
            # FSDP/DeepSpeed: each process keeps its own shard of the optimizer state
            "optimizer": None if sharded else optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "fingerprint": fingerprint,
            "n_examples": len(data),
            "master": master.state_dict(),
            "data_order": {"seed": config.seed, "rule": "epoch_order(n, seed, epoch)"},
            "threads": threads,  # torch CPU threads: a resume on another count is told so
        }
        if config.lora.enabled:
            lm = acc.unwrap_model(wrapped).lm
            state["adapter"] = {k: v for k, v in lm.state_dict().items() if "lora_" in k}
        shard = optimizer.state_dict() if sharded else None
        save_checkpoint(run / "checkpoints" / name, acc, write_model, tokenizer, config, state,
                        shard, template=loaded.template)  # fmt: skip
        crash_point(f"train:checkpoint:{global_step}")  # resume tests kill the run here

    if acc.is_main_process:
        run.mkdir(parents=True, exist_ok=True)
        config.save(run / "train_config.yaml")
    reporter = Reporter(run, total, global_step, enabled=acc.is_main_process)
    done = global_step >= total
    for epoch in range(start_epoch, config.epochs):
        if done:
            break
        groups = step_groups(epoch_order(len(data), config.seed, epoch), config.global_batch)
        for s, group in enumerate(groups):
            if epoch == start_epoch and s < start_step:
                continue  # already trained before the resumed checkpoint
            t0 = time.perf_counter()
            items = [data[i] for i in group]
            n_target = sum(x.weight for x in items)  # the whole global batch's denominator
            micro = plan_micro_batches(items, config.micro_batch, config.max_len, config.packing)
            n_real = sum(len(x) for x in items)
            n_tokens = sum(len(mb) * max(sum(len(x) for x in row) for row in mb) for mb in micro)
            mine = micro[rank::world]
            if not mine:  # fewer micro-batches than processes: join with an empty one
                mine = [[[Encoded(-1, micro[0][0][0].ids, [-100] * len(micro[0][0][0]))]]]
            loss_sum = torch.zeros((), device=acc.device)
            for k, rows in enumerate(mine):
                # Built on the host, moved once (pinned, non-blocking on CUDA): nothing in the
                # step waits for the device except the loss read at its end.
                b = to_device(
                    collate(rows, tokenizer.pad_token_id, with_mask=with_mask), acc.device
                )
                sync = k == len(mine) - 1
                with contextlib.nullcontext() if sync else acc.no_sync(wrapped), autocast:
                    part = wrapped(
                        input_ids=b["input_ids"],
                        targets=b["targets"],
                        position_ids=b["position_ids"],
                        attention_mask=b["attention_mask"],
                        segments=b["segments"],
                        target_index=b["target_index"],
                        target_weight=b["target_weight"],
                        # DDP averages gradients over processes: scaled, the result is sum / n_target.
                        scale=world / n_target,
                    )
                    acc.backward(part)
                if world == 1 or sync:  # with DDP, only the synced gradient is complete
                    master.collect()  # float32 accumulation across micro-batches
                loss_sum += part.detach().float()
            if config.grad_clip:
                params = master.params if master.pairs else wrapped.parameters()  # FSDP: its own
                acc.clip_grad_norm_(params, config.grad_clip)
            lr = optimizer.param_groups[0]["lr"]
            optimizer.step()
            master.publish()
            scheduler.step()
            master.zero_grad()
            global_step += 1
            loss = acc.reduce(loss_sum, reduction="sum").item() / world
            dt = time.perf_counter() - t0
            reporter.step(
                {
                    "step": global_step,
                    "epoch": epoch + (s + 1) / len(groups),
                    "loss": loss,
                    "lr": lr,
                    "real_tokens": n_real,
                    "target_tokens": n_target,
                    "padding": 1.0 - n_real / n_tokens,
                    "tokens_per_s": n_real / dt,
                    "step_time_s": dt,
                }
            )
            done = global_step >= total
            if config.save_every_steps and global_step % config.save_every_steps == 0 and not done:
                if s + 1 < len(groups):
                    checkpoint("latest", epoch, s + 1)
            if done and s + 1 < len(groups):
                checkpoint("latest", epoch, s + 1)  # a capped run can still be resumed/extended
                break
        else:
            if config.save_epochs is None or epoch + 1 in config.save_epochs:
                checkpoint(f"epoch-{epoch + 1}", epoch + 1, 0)
    reporter.close()
    if acc.is_main_process:
        summary = {
            "steps": global_step,
            "examples": len(data),
            "trimmed": data_stats.trimmed,  # examples cut to max_len tokens
            "max_len": config.max_len,
            "processes": world,
            "threads": threads,  # torch CPU threads the run trained with
        }
        write_json(run / "summary.json", summary)  # read as "training done": written atomically
    acc.wait_for_everyone()
    return run
