"""Benchmark the LIMA trainer against TRL's SFTTrainer on the packaged SmolLM2-135M.

Same 256 LIMA-shaped examples (drawn reproducibly from the packaged ShareGPT pool: first-turn
pairs, prompt <= 300 words, response 100-800 words), max_len 1024, 8 examples per optimizer step,
lr 1e-5. Each setting runs in its own process (so peak RSS is its own) for a few steps; the table
reports the median real (non-padding) tokens/s of the timed steps, padding fraction, peak RSS, loss
after the same steps and MFU = 6 x params x tokens/s over the matmul peak measured here.

    python bench/train.py --skip-trl        # compare with the TRL figures quoted in the issue
    python bench/train.py --trl             # pip-installs trl into this environment and runs it

Exit status 1 when a target is missed. The CPU may be shared: figures are noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
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
    # name: overrides of the trainer config
    # Length-grouped rows of one example each run the fast causal kernel (no dense mask);
    # smaller micro-batches over the same 8 examples per step keep padding low.
    "fp32-fast": ["micro_batch=2", "packing=false"],
    "bf16": ["micro_batch=2", "packing=false", "autocast=true"],
    "lean": ["micro_batch=1", "packing=false", "grad_checkpointing=true", "autocast=true"],
    # Packed rows of up to max_len tokens, attention per example (causal SDPA on each piece).
    "fp32-packed": ["micro_batch=1", "packing=true"],
    "bf16-packed": ["micro_batch=1", "packing=true", "autocast=true"],
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


def worker(mode: str, data: str, steps: int, out: str) -> None:
    """One setting of our trainer; prints a JSON line with the measurements."""
    from limakit.config import load_config
    from limakit.models import load_model
    from limakit.training import TrainConfig, train

    overrides = [
        f"data={data}",
        "model=smollm2-135m",
        "global_batch=8",
        "max_len=1024",
        "dropout_top=0.0",  # TRL has no residual dropout: same loss, same computation
        "drop_untrained=true",  # prompts of code can fill max_len: skipped and reported
        f"max_steps={steps}",
        "epochs=1",
        *MODES[mode],
    ]
    cfg = load_config(TrainConfig, None, overrides)
    run = train(cfg, out)
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    timed = rows[1:] or rows  # the first step pays one-off costs
    params = sum(p.numel() for p in load_model("smollm2-135m").parameters())
    print(
        json.dumps(
            {
                "tokens_per_s": statistics.median(r["tokens_per_s"] for r in timed),
                "padding": sum(r["padding"] * r["real_tokens"] for r in rows)
                / sum(r["real_tokens"] for r in rows),
                "loss": rows[-1]["loss"],
                "steps": len(rows),
                "params": params,
                "rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
            }
        )
    )


def trl_worker(data: str, steps: int, out: str) -> None:
    """TRL's SFTTrainer, fp32, group-by-length, micro-batch 8 (its best non-leaking fp32 mode)."""
    from datasets import load_dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from limakit.models import resolve

    path = resolve("smollm2-135m")
    rows = [json.loads(x) for x in Path(data).read_text().splitlines()]
    pc = [{"prompt": [r["messages"][0]], "completion": [r["messages"][1]]} for r in rows]
    Path(out).mkdir(parents=True, exist_ok=True)
    (Path(out) / "pc.jsonl").write_text("".join(json.dumps(r) + "\n" for r in pc))
    ds = load_dataset("json", data_files=str(Path(out) / "pc.jsonl"), split="train")
    times: list[float] = []
    losses: list[float] = []
    from transformers import TrainerCallback

    class Clock(TrainerCallback):
        def on_step_begin(self, *a, **k):
            self.t = time.perf_counter()

        def on_step_end(self, *a, **k):
            times.append(time.perf_counter() - self.t)

        def on_log(self, args, state, control, logs=None, **k):
            if logs and "loss" in logs:
                losses.append(logs["loss"])

    args = SFTConfig(
        output_dir=out,
        per_device_train_batch_size=8,
        max_length=1024,
        learning_rate=1e-5,
        max_steps=steps,
        logging_steps=1,
        report_to=[],
        save_strategy="no",
        gradient_checkpointing=False,
        group_by_length=True,
        use_cpu=True,
    )
    trainer = SFTTrainer(
        model=AutoModelForCausalLM.from_pretrained(path),
        args=args,
        train_dataset=ds,
        processing_class=AutoTokenizer.from_pretrained(path),
        callbacks=[Clock()],
    )
    trainer.train()
    n_real = sum(len(x) for x in trainer.train_dataset["input_ids"]) / len(trainer.train_dataset)
    tps = 8 * n_real / statistics.median(times[1:] or times)  # mean example length, approximate
    print(
        json.dumps(
            {
                "tokens_per_s": tps,
                "padding": None,
                "loss": losses[-1] if losses else None,
                "steps": len(times),
                "rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
            }
        )
    )


def run_child(args: list[str]) -> dict:
    cmd = [sys.executable, __file__, *args]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        sys.stderr.write(res.stderr[-3000:])
        raise SystemExit(f"bench child failed: {' '.join(args)}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--steps", type=int, default=4, help="optimizer steps per setting")
    p.add_argument("--trl", action="store_true", help="install and run TRL in this environment")
    p.add_argument(
        "--skip-trl", action="store_true", help="use the TRL figures quoted in the issue"
    )
    p.add_argument("--modes", default=",".join(MODES))
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker == "trl":
        trl_worker(a.data, a.steps, a.out)
        return 0
    if a.worker:
        worker(a.worker, a.data, a.steps, a.out)
        return 0

    import torch

    tmp = Path(tempfile.mkdtemp(prefix="lima-bench-"))
    data = tmp / "examples.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in draw_examples()))
    peak = {"fp32": matmul_peak("float32"), "bf16": matmul_peak("bfloat16")}
    print(
        f"threads {torch.get_num_threads()}; matmul peak: fp32 {peak['fp32'] / 1e9:.0f} GFLOP/s, "
        f"bf16 {peak['bf16'] / 1e9:.0f} GFLOP/s"
    )
    results: dict[str, dict] = {}
    for mode in a.modes.split(","):
        print(f"running {mode} ({a.steps} steps)...", flush=True)
        results[mode] = run_child(
            [
                "--worker",
                mode,
                "--data",
                str(data),
                "--steps",
                str(a.steps),
                "--out",
                str(tmp / mode),
            ]
        )
    trl_best, trl_source = 130.0, "quoted in the issue (TRL 1.16, same machine type)"
    if a.trl and not a.skip_trl:
        pip = [sys.executable, "-m", "pip", "install", "-q", "trl"]
        if subprocess.run(pip).returncode == 0:
            r = run_child(
                [
                    "--worker",
                    "trl",
                    "--data",
                    str(data),
                    "--steps",
                    str(a.steps),
                    "--out",
                    str(tmp / "trl"),
                ]
            )
            results["TRL group-by-length fp32 (measured)"] = r
            trl_best, trl_source = r["tokens_per_s"], "measured in this run"
        else:
            print("TRL could not be installed: using the quoted figures")
    params = next(iter(results.values())).get("params", 134.5e6)
    print(f"\nTRL best fp32 real tokens/s = {trl_best:.0f} ({trl_source})\n")
    print("| setting | real tokens/s | padding | MFU | peak RSS GB | loss after steps |")
    print("|---|---|---|---|---|---|")
    if trl_source.startswith("quoted"):
        for name, (tps, pad, mfu, rss) in TRL_QUOTED.items():
            print(f"| TRL {name} (quoted) | {tps} | {pad:.0%} | {mfu:.0%} | {rss} | - |")
    failed = []
    for name, r in results.items():
        dt = "bf16" if name.startswith("bf16") or name == "lean" else "fp32"
        mfu = 6 * params * r["tokens_per_s"] / peak[dt]
        pad = "-" if r["padding"] is None else f"{r['padding']:.0%}"
        loss = "-" if r["loss"] is None else f"{r['loss']:.4f}"
        print(
            f"| limakit {name} | {r['tokens_per_s']:.0f} | {pad} | {mfu:.0%} of {dt} peak "
            f"| {r['rss_gb']:.1f} | {loss} |"
        )
        r["mfu"] = mfu
    # Each target is checked on the fastest measured mode of its family (packed or not).
    targets = {
        "fp32": (("fp32-fast", "fp32-packed"), 1.6, 10.0),
        "bf16": (("bf16", "bf16-packed"), 4.0, None),
        "lean": (("lean",), 1.2, 4.0),
    }
    print()
    for _family, (modes, speedup, rss) in targets.items():
        measured = [m for m in modes if m in results]
        if not measured:
            continue
        name = max(measured, key=lambda m: results[m]["tokens_per_s"])
        r = results[name]
        ok_speed = r["tokens_per_s"] >= speedup * trl_best
        ok_rss = rss is None or r["rss_gb"] <= rss
        print(
            f"{name}: {r['tokens_per_s'] / trl_best:.2f}x TRL best fp32 (target {speedup}x)"
            + ("" if rss is None else f", peak RSS {r['rss_gb']:.1f} GB (target <= {rss})")
            + ("  OK" if ok_speed and ok_rss else "  MISSED")
        )
        if not (ok_speed and ok_rss):
            failed.append(name)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
