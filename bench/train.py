"""Benchmark the LIMA trainer against TRL's SFTTrainer on the packaged SmolLM2-135M.

LIMA-shaped examples drawn reproducibly from the packaged ShareGPT pool (256 first-turn pairs,
prompt <= 300 words, response 100-800 words, of which the first ``8 x --steps`` are used),
max_len 1024, 8 examples per optimizer step, constant lr 1e-5, AdamW (0.9, 0.95), weight decay
0.1, no clipping, no dropout. TRL trains on the very tokens our template renders (EOT and loss
mask included) with the same EOT-extended model, so the losses of the two trainers can be compared
step by step ("padding in our step order" sees the
same examples in the same order as ours). Each setting runs in its own process (peak RSS is its
own) for two epochs over the same examples: the first warms up (and its losses are compared),
the second is timed. Every trainer and setting therefore times exactly the same examples, however
it orders, groups or packs them (timing a few steps instead would favour a setting whose first
steps happen to hold long examples). The table reports real (non-padding) tokens over seconds of
the timed epoch, padding fraction, peak RSS, the loss of each warm-up step and MFU = 6 x params x
tokens/s over the matmul peak measured here.

    python bench/train.py          # compare with the TRL figures quoted in the issue
    make bench-train               # TRL measured in the same run (from its own virtualenv)

Exit status 1 when a target is missed. The CPU may be shared: figures are noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# TRL 1.16 on this machine (issue 4): real tokens/s, padding, MFU, peak RSS GB.
TRL_QUOTED = {
    "fp32, padding": (81, 0.41, 0.29, 21.3),
    "fp32, padding + grad checkpointing": (59, 0.42, 0.21, 9.3),
    "fp32, group by length": (121, 0.12, 0.43, 20.9),
    "fp32, padding-free packing + ckpt": (44, 0.0, 0.16, 8.7),
    "fp32, wrapped packing (cross-attends)": (130, 0.02, 0.49, 20.3),
    "bf16 autocast, padding": (115, 0.43, 0.13, 18.0),
}
MODES = {
    # name: overrides of the trainer config (micro-batches cover the same 8 examples per step)
    # Packed rows of up to max_len tokens, attention per example (causal SDPA on each piece).
    "fp32-packed": ["micro_batch=1", "packing=true"],
    # Length-grouped rows of one example each: the fast causal kernel, little padding.
    "fp32-grouped": ["micro_batch=2", "packing=false"],
    # bf16 weights, float32 master weights, gradients and AdamW state.
    "bf16-packed": ["micro_batch=1", "packing=true", "dtype=bfloat16"],
    "bf16-grouped": ["micro_batch=2", "packing=false", "dtype=bfloat16"],
    # float32 weights, bf16 autocast (the usual CUDA recipe).
    "autocast-packed": ["micro_batch=1", "packing=true", "autocast=true"],
    # Activation checkpointing, one example per micro-batch, loss chunks of 256 positions.
    "lean": [
        "micro_batch=1",
        "packing=false",
        "grad_checkpointing=true",
        "autocast=true",
        "loss_chunk=256",
    ],
}


def draw_examples(n: int = 256, seed: int = 0) -> list[dict]:
    """``n`` LIMA-shaped first-turn pairs from the ShareGPT pool, the same ones on every run."""
    from limakit.sources.sharegpt import ShareGPTStream

    pool = []
    for obj in ShareGPTStream("packaged").records():  # stops cleanly where the file is cut off
        conv = obj.get("conversations") or []
        if len(conv) < 2 or conv[0].get("from") != "human" or conv[1].get("from") != "gpt":
            continue
        q, a = conv[0]["value"].strip(), conv[1]["value"].strip()
        if q and len(q.split()) <= 300 and 100 <= len(a.split()) <= 800:
            pool.append((obj["id"], q, a))
    picked = random.Random(seed).sample(pool, n)
    return [
        {
            "id": i,
            "source": "sharegpt",
            "messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}],
        }
        for i, q, a in picked
    ]


def matmul_peak(dtype_name: str, n: int = 2048, reps: int = 5) -> float:
    """Best-of-``reps`` FLOP/s of an n x n matmul in this dtype."""
    import torch

    dtype = getattr(torch, dtype_name)
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best


def _common(data: str) -> list[str]:
    """The trainer settings every mode shares (and TRL is given): two epochs over ``data``."""
    return [
        f"data={data}",
        "model=smollm2-135m",
        "global_batch=8",
        "max_len=1024",
        "lr=1e-5",
        "final_lr=1e-5",  # a constant rate, as given to TRL, so the losses are comparable
        "dropout_top=0.0",  # TRL has no residual dropout: same loss, same computation
        "drop_untrained=true",  # prompts of code can fill max_len: skipped and reported
        "epochs=2",
        "save_epochs=[]",
    ]


def timed_epoch(rows: list[dict]) -> dict:
    """Throughput of the second half of the steps (the second epoch)."""
    timed = rows[len(rows) // 2 :]
    return {
        "tokens_per_s": sum(r["real"] for r in timed) / sum(r["time"] for r in timed),
        "padding": 1 - sum(r["real"] for r in timed) / sum(r["total"] for r in timed),
    }


def run_steps(run: Path) -> tuple[list[dict], list[dict]]:
    """A training run's metrics rows, and per step its real tokens, all tokens and seconds."""
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [
        {
            "real": r["real_tokens"],
            "total": r["real_tokens"] / (1 - r["padding"]),
            "time": r["step_time_s"],
        }
        for r in rows
    ]
    return rows, steps


def worker(mode: str, data: str, out: str) -> None:
    """One setting of our trainer; prints a JSON line with the measurements."""
    from limakit.core.config import load_config
    from limakit.models import load_model
    from limakit.training import TrainConfig, train
    from limakit.training.allocator import keep_freed_memory_for_cpu_training

    keep_freed_memory_for_cpu_training()  # as `lima train` does in its process
    cfg = load_config(TrainConfig, None, [*_common(data), *MODES[mode]])
    run = train(cfg, out)
    rows, steps = run_steps(run)
    params = sum(p.numel() for p in load_model("smollm2-135m").parameters())
    print(
        json.dumps(
            {
                **timed_epoch(steps),
                "losses": [r["loss"] for r in rows[: len(rows) // 2]],
                "steps": len(rows),
                "params": params,
                "rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
            }
        )
    )


# TRL settings run by ``--trl-python``: name -> SFTConfig fields (all fp32, micro-batch 8 rows).
TRL_MODES = {
    # The same examples in the same order as limakit's steps: the loss check compares with this one.
    "padding in our step order": {"train_sampling_strategy": "sequential"},
    "group by length": {"train_sampling_strategy": "group_by_length"},
    "wrapped packing (cross-attends)": {"packing": True, "packing_strategy": "wrapped"},
}


def write_tokens(data: Path, dest: Path) -> int:
    """Render the examples exactly as our trainer does, in its step order, for TRL to train on.

    TRL then trains on the same token ids (EOT included) with the same loss mask, so the losses
    of both trainers can be compared step by step. Returns the number of examples.
    """
    from limakit.core.config import load_config
    from limakit.models import load_tokenizer
    from limakit.training import TrainConfig
    from limakit.training.batching import epoch_order
    from limakit.training.loop import encode

    cfg = load_config(TrainConfig, None, _common(str(data)))
    items = encode(cfg, load_tokenizer(cfg.model))
    rows = []
    for i in epoch_order(len(items), cfg.seed, 0):
        x = items[i]
        mask = [0] + [int(t != -100) for t in x.targets[:-1]]  # targets are shifted by one
        rows.append({"input_ids": list(x.ids), "completion_mask": mask})
    dest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return len(rows)


def trl_worker(mode: str, tokens: str, out: str) -> None:
    """TRL's SFTTrainer in one setting, on our rendered tokens; prints a JSON line."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    from limakit.models import attach, load_tokenizer, resolve
    from limakit.records.template import Template

    tokenizer = load_tokenizer("smollm2-135m")
    model = AutoModelForCausalLM.from_pretrained(resolve("smollm2-135m"), dtype=torch.float32)
    attach(tokenizer, model, Template())  # the same EOT row as ours
    rows = [json.loads(x) for x in Path(tokens).read_text().splitlines()]
    ds = Dataset.from_list(rows)
    times: list[float] = []
    losses: list[float] = []
    counts: list[tuple[int, int]] = []

    class Clock(TrainerCallback):
        def on_step_begin(self, *a, **k):
            self.t = time.perf_counter()

        def on_step_end(self, *a, **k):
            times.append(time.perf_counter() - self.t)

        def on_log(self, args, state, control, logs=None, **k):
            if logs and "loss" in logs:
                losses.append(logs["loss"])

    class Counting(SFTTrainer):
        def training_step(self, model, inputs, *a, **k):
            mask = inputs.get("attention_mask")
            real = int(mask.sum()) if mask is not None else inputs["input_ids"].numel()
            counts.append((real, inputs["input_ids"].numel()))
            return super().training_step(model, inputs, *a, **k)

    args = SFTConfig(
        output_dir=out,
        per_device_train_batch_size=8,
        max_length=1024,
        learning_rate=1e-5,
        lr_scheduler_type="constant",
        adam_beta1=0.9,
        adam_beta2=0.95,
        weight_decay=0.1,
        max_grad_norm=0.0,  # the LIMA protocol does not clip
        num_train_epochs=2,
        logging_steps=1,
        report_to="none",
        save_strategy="no",
        gradient_checkpointing=False,
        completion_only_loss=True,
        use_cpu=True,
        seed=0,
        **TRL_MODES[mode],
    )
    trainer = Counting(
        model=model, args=args, train_dataset=ds, processing_class=tokenizer, callbacks=[Clock()]
    )
    trainer.train()
    steps = [
        {"real": real, "total": total, "time": t}
        for (real, total), t in zip(counts, times, strict=True)
    ]
    print(
        json.dumps(
            {
                **timed_epoch(steps),
                "losses": losses[: len(losses) // 2],
                "steps": len(times),
                "rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
            }
        )
    )


def run_child(args: list[str], python: str = sys.executable) -> dict:
    res = subprocess.run([python, __file__, *args], capture_output=True, text=True)
    if res.returncode != 0:
        sys.stderr.write(res.stderr[-3000:])
        raise SystemExit(f"bench child failed: {' '.join(args)}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--steps",
        type=int,
        default=4,
        help="optimizer steps per epoch: the bench trains on the first 8 x STEPS examples, "
        "two epochs per setting, and times the second",
    )
    p.add_argument(
        "--trl-python",
        help="python of an environment with trl installed (make venv-bench); "
        "without it, TRL's figures quoted in the issue are used",
    )
    p.add_argument("--modes", default=",".join(MODES), help="our settings to run")
    p.add_argument("--trl-modes", default=",".join(TRL_MODES), help="TRL settings to run")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--trl-worker", help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.trl_worker:
        trl_worker(a.trl_worker, a.data, a.out)
        return 0
    if a.worker:
        worker(a.worker, a.data, a.out)
        return 0

    import torch

    tmp = Path(tempfile.mkdtemp(prefix="lima-bench-"))
    data = tmp / "examples.jsonl"
    subset = draw_examples()[: 8 * a.steps]
    data.write_text("".join(json.dumps(r) + "\n" for r in subset))
    peak = {"fp32": matmul_peak("float32"), "bf16": matmul_peak("bfloat16")}
    print(
        f"threads {torch.get_num_threads()}; matmul peak: fp32 {peak['fp32'] / 1e9:.0f} GFLOP/s, "
        f"bf16 {peak['bf16'] / 1e9:.0f} GFLOP/s"
    )
    ours: dict[str, dict] = {}
    for mode in a.modes.split(","):
        print(f"running limakit {mode} (2 epochs of {len(subset)} examples)...", flush=True)
        ours[mode] = run_child(["--worker", mode, "--data", str(data), "--out", str(tmp / mode)])
    theirs: dict[str, dict] = {}
    if a.trl_python:
        tokens = tmp / "tokens.jsonl"
        write_tokens(data, tokens)
        for mode in a.trl_modes.split(","):
            print(f"running TRL {mode} (2 epochs of {len(subset)} examples)...", flush=True)
            theirs[mode] = run_child(
                ["--trl-worker", mode, "--data", str(tokens)]
                + ["--out", str(tmp / f"trl-{len(theirs)}")],
                python=a.trl_python,
            )
    if theirs:
        trl_best = max(r["tokens_per_s"] for r in theirs.values())
        source = "measured in this run"
    else:
        trl_best = max(v[0] for k, v in TRL_QUOTED.items() if k.startswith("fp32"))
        source = "quoted in the issue; pass --trl-python to measure it"
    params = next(iter(ours.values()))["params"]
    reference = theirs.get("padding in our step order", {}).get("losses")

    def mfu(r: dict, dt: str) -> float:
        return 6 * params * r["tokens_per_s"] / peak[dt]

    print(f"\nTRL best fp32 real tokens/s = {trl_best:.0f} ({source})\n")
    print(
        "| trainer, setting | real tokens/s | padding | MFU | peak RSS GB | loss of each warm-up step |"
    )
    print("|---|---|---|---|---|---|")
    if not theirs:
        for name, (tps, pad, m, rss) in TRL_QUOTED.items():
            print(f"| TRL {name} (quoted) | {tps} | {pad:.0%} | {m:.0%} | {rss} | - |")
    for name, r in theirs.items():
        losses = " ".join(f"{x:.4f}" for x in r["losses"])
        print(
            f"| TRL fp32, {name} | {r['tokens_per_s']:.0f} | {r['padding']:.0%} "
            f"| {mfu(r, 'fp32'):.0%} of fp32 peak | {r['rss_gb']:.1f} | {losses} |"
        )
    for name, r in ours.items():
        dt = "fp32" if name.startswith("fp32") else "bf16"
        losses = " ".join(f"{x:.4f}" for x in r["losses"])
        print(
            f"| limakit {name} | {r['tokens_per_s']:.0f} | {r['padding']:.0%} "
            f"| {mfu(r, dt):.0%} of {dt} peak | {r['rss_gb']:.1f} | {losses} |"
        )
    # Each target is checked on the fastest measured mode of its family (packed or not).
    targets = {
        "fp32": (("fp32-grouped", "fp32-packed"), 1.6, 10.0),
        "bf16": (("bf16-packed", "bf16-grouped", "autocast-packed"), 4.0, None),
        "lean": (("lean",), 1.2, 4.0),
    }
    failed = []
    print()
    for family, (modes, speedup, rss) in targets.items():
        measured = [m for m in modes if m in ours]
        if not measured:
            continue
        name = max(measured, key=lambda m: ours[m]["tokens_per_s"])
        r = ours[name]
        ok = r["tokens_per_s"] >= speedup * trl_best and (rss is None or r["rss_gb"] <= rss)
        # The MFU the target asks for: above 100% it cannot be met on this machine at all.
        needed = 6 * params * speedup * trl_best / peak["fp32" if family == "fp32" else "bf16"]
        print(
            f"{name}: {r['tokens_per_s'] / trl_best:.2f}x TRL best fp32 (target {speedup}x, "
            f"i.e. {needed:.0%} MFU)"
            + ("" if rss is None else f", peak RSS {r['rss_gb']:.1f} GB (target <= {rss})")
            + ("  OK" if ok else "  MISSED")
        )
        if not ok:
            failed.append(name)
    if reference:  # the same tokens, masks, order and optimizer: the losses must agree
        for name, r in ours.items():
            tol = 0.01 if name.startswith("fp32") else 0.05
            gap = max(abs(x - y) for x, y in zip(r["losses"], reference, strict=False))
            ok = gap <= tol
            print(
                f"{name}: loss differs from TRL's by at most {gap:.4f} per step "
                f"(target <= {tol})" + ("  OK" if ok else "  MISSED")
            )
            if not ok:
                failed.append(f"{name} loss")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
