"""The trainer on one GPU against TRL's SFTTrainer, on the same tokens, in one run (under 8 minutes).

Model: a random-init model of SmolLM2-1.7B's shape (Llama, 24 x 2048, 32 heads, vocabulary of the
SmolLM2 tokenizer plus EOT), built by this script on the GPU: no weights travel and speed does not
depend on their values. Data: 256 LIMA-shaped ShareGPT first-turn pairs from the packaged pool
(``bench/train.py``'s ``draw_examples``), max_len 2048, global batch 32, micro-batch 8, constant
lr 1e-5, AdamW (0.9, 0.95), wd 0.1, no dropout, two epochs, the second timed. TRL trains on the
tokens our template renders (EOT and loss mask included), in our step order for the padding run,
so the first losses compare step by step. Every setting runs in its own process (its own peak
memory) with a time limit; one that fails or runs out of time is reported and the rest go on.

    python bench/gpu.py                    # on a CUDA machine; exit 1 when a target is missed
    python bench/gpu.py --cpu-dry-run      # the same code paths on a 2-layer toy on the CPU
    python bench/gpu.py --profile bf16-packed   # where 3 steps of one mode spend their time
    python bench/gpu.py --profile-decode graphs # where one decode step at batch 64 spends it
    python bench/gpu.py --parts gen,train --budget 420 --json out/rows.jsonl   # one bounded call
    python bench/gpu.py --prepare gpu-inputs   # examples + tokenizer for a machine without them

The table gives real (non-padding) tokens/s of the timed epoch, padding, MFU = 6 x params x
tokens/s over the bf16 matmul peak measured at the start, peak GPU memory and the losses of the
first steps. TRL is run when it is importable (say so and go on when it is not). The sampling
table says how the engine's decode steps ran (CUDA graphs, or eager and why) and how long a step
took; when the engine is under 5x transformers' ``generate``, a profile of one decode step follows
(its Chrome trace is written beside ``--json``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from train import draw_examples, run_steps, timed_epoch  # noqa: E402  (bench/train.py)

SHAPES = {  # SmolLM2-1.7B's shape, and a toy for the dry run
    "gpu": dict(
        hidden_size=2048,
        intermediate_size=8192,
        num_hidden_layers=24,
        num_attention_heads=32,
        num_key_value_heads=32,
        head_dim=64,
    ),
    "cpu": dict(
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        head_dim=32,
    ),
}
# name: trainer overrides. Every mode trains the same examples in the same steps.
MODES = {
    # compile=auto compiles on CUDA: the uncompiled modes say compile=false.
    "bf16-packed": ["dtype=bfloat16", "packing=true", "compile=false"],
    "bf16-packed-compiled": ["dtype=bfloat16", "packing=true", "compile=true"],
    "bf16-packed-sdpa-mask": [
        "dtype=bfloat16",
        "packing=true",
        "packed_attention=sdpa-mask",
        "compile=false",
    ],
    "bf16-grouped": ["dtype=bfloat16", "packing=false", "compile=false"],
    "autocast-packed": ["autocast=true", "packing=true", "compile=false"],
}
TRL_MODES = {
    "padding": {"train_sampling_strategy": "sequential"},  # our step order: losses compare
    "wrapped packing (cross-attends)": {"packing": True, "packing_strategy": "wrapped"},
}


def settings(dry: bool) -> dict:
    return {
        "n": 16 if dry else 256,
        "global_batch": 8 if dry else 32,
        "micro_batch": 2 if dry else 8,
        "max_len": 512 if dry else 2048,
    }


def cpu_overrides(mode: str, fast_bf16: bool) -> list[str]:
    """The dry run's changes to a mode: fp32 where this CPU has no fast bf16 matmul."""
    if fast_bf16:
        return []
    return ["dtype=float32", "autocast=false"]


def common(data: str, model: str, s: dict) -> list[str]:
    return [
        f"data={data}",
        f"model={model}",
        f"global_batch={s['global_batch']}",
        f"micro_batch={s['micro_batch']}",
        f"max_len={s['max_len']}",
        "lr=1e-5",
        "final_lr=1e-5",
        "dropout_top=0.0",
        "drop_untrained=true",
        "epochs=2",
        "save_epochs=[]",
    ]


def device_name(dry: bool) -> str:
    return "cpu" if dry else "cuda"


def peak_memory_gb() -> float:
    import torch

    return torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else 0.0


def matmul_peak(device: str, dtype_name: str = "bfloat16") -> float:
    """Best-of-5 matmul FLOP/s on ``device`` (8192^3 on a GPU, 512^3 on a CPU)."""
    import torch

    n = 8192 if device == "cuda" else 512
    dtype = getattr(torch, dtype_name)
    a = torch.randn(n, n, dtype=dtype, device=device)
    b = torch.randn(n, n, dtype=dtype, device=device)
    best = float("inf")
    for _ in range(3 if device == "cpu" else 6):
        if device == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        a @ b
        if device == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best


def build_model(tokenizer_dir: str, dest: Path, dry: bool) -> int:
    """Save a random-init model of the chosen shape with the limakit format; returns its params."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from limakit.models import attach, load_tokenizer
    from limakit.records.template import Template, save_tokenizer

    config = AutoConfig.from_pretrained(tokenizer_dir)
    for k, v in SHAPES["cpu" if dry else "gpu"].items():
        setattr(config, k, v)
    tok = load_tokenizer(tokenizer_dir)
    torch.manual_seed(0)
    with torch.device(device_name(dry)):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    attach(tok, model, Template())
    model.save_pretrained(dest)
    save_tokenizer(tok, dest, Template())  # with its template file, as a trained checkpoint
    return sum(p.numel() for p in model.parameters())


def prepare(dest: Path, tokenizer: str) -> None:
    """Everything the bench reads that a bare GPU machine lacks, in ``dest`` (a few MB, no
    weights): the 256 examples and the tokenizer and config of the model whose shape is built."""
    import shutil

    from limakit.models import resolve

    dest.mkdir(parents=True, exist_ok=True)
    rows = draw_examples(settings(False)["n"])
    (dest / "examples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    src, tok = Path(resolve(tokenizer)), dest / "tokenizer"
    tok.mkdir(exist_ok=True)
    for name in ("config.json", "generation_config.json", "tokenizer.json",
                 "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja"):  # fmt: skip
        if (src / name).exists():
            shutil.copy(src / name, tok / name)
    print(
        f"wrote {len(rows)} examples and the tokenizer of {tokenizer} to {dest}; on the GPU "
        f"machine, from the project root:\n  python bench/gpu.py --data {dest}/examples.jsonl "
        f"--tokenizer {dest}/tokenizer --parts gen,train --budget 480 --json out/rows.jsonl"
    )


def write_tokens(data: Path, model: str, s: dict, dest: Path) -> None:
    """Our rendered tokens and loss masks, in our first epoch's order, for TRL to train on."""
    from limakit.core.config import load_config
    from limakit.models import load_tokenizer
    from limakit.training import TrainConfig
    from limakit.training.batching import epoch_order
    from limakit.training.loop import encode

    cfg = load_config(TrainConfig, None, common(str(data), model, s))
    items = encode(cfg, load_tokenizer(model))
    rows = []
    for i in epoch_order(len(items), cfg.seed, 0):
        x = items[i]
        mask = [0] + [int(t != -100) for t in x.targets[:-1]]
        rows.append({"input_ids": list(x.ids), "completion_mask": mask})
    dest.write_text("".join(json.dumps(r) + "\n" for r in rows))


def device_busy_us(table) -> float:
    """Microseconds of device kernels in a profile's ``key_averages()``: the device's own events
    only, as torch's table totals them (a kernel also appears in the operator that launched it,
    so summing every row would count it twice)."""
    from torch.autograd import DeviceType

    return sum(
        e.self_device_time_total
        for e in table
        if e.device_type == DeviceType.CUDA and not getattr(e, "is_user_annotation", False)
    )


def profile(mode: str, data: str, model: str, out: str, dry: bool, steps: int = 3) -> None:
    """Train ``mode`` for 2 + ``steps`` steps; print where the profiled steps spent their time."""
    import torch

    import limakit.training.loop as loop
    from limakit.core.config import load_config
    from limakit.training import TrainConfig, train
    from limakit.training.allocator import keep_freed_memory_for_cpu_training

    keep_freed_memory_for_cpu_training()  # as `lima train` does in its process (CPU only)
    activities = [torch.profiler.ProfilerActivity.CPU]
    if torch.cuda.is_available():
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    prof = torch.profiler.profile(activities=activities)
    marks: dict[str, float] = {}

    def sync() -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()

    class Profiled(loop.Reporter):
        def step(self, row):
            super().step(row)
            if row["step"] == 2:  # after the warm-up steps
                sync()
                marks["start"] = time.perf_counter()
                prof.start()
            elif row["step"] == 2 + steps:
                sync()
                marks["stop"] = time.perf_counter()
                prof.stop()

    loop.Reporter = Profiled
    extra = cpu_overrides(mode, os.environ.get("LIMAKIT_BENCH_FAST_BF16") == "1") if dry else []
    overrides = [*common(data, model, settings(dry)), *MODES[mode], *extra]
    train(load_config(TrainConfig, None, [*overrides, f"max_steps={2 + steps}"]), out)
    wall = marks["stop"] - marks["start"]
    table = prof.key_averages()
    busy = device_busy_us(table) / 1e6
    print(f"{mode}: {steps} steps in {wall:.3f} s; device kernels busy {busy:.3f} s")
    key = "self_device_time_total" if torch.cuda.is_available() else "self_cpu_time_total"
    print(table.table(sort_by=key, row_limit=30, max_name_column_width=70))
    print(table.table(sort_by="self_cpu_time_total", row_limit=15, max_name_column_width=70))


def ours_worker(mode: str, data: str, model: str, out: str, dry: bool) -> dict:
    from limakit.core.config import load_config
    from limakit.training import TrainConfig, train
    from limakit.training.allocator import keep_freed_memory_for_cpu_training

    keep_freed_memory_for_cpu_training()  # as `lima train` does in its process (CPU only)
    extra = cpu_overrides(mode, os.environ.get("LIMAKIT_BENCH_FAST_BF16") == "1") if dry else []
    cfg = load_config(
        TrainConfig, None, [*common(data, model, settings(dry)), *MODES[mode], *extra]
    )
    run = train(cfg, out)
    rows, steps = run_steps(run)
    return {
        **timed_epoch(steps),
        "losses": [r["loss"] for r in rows[: len(rows) // 2]],
        "gpu_gb": peak_memory_gb(),
    }


def trl_worker(mode: str, data: str, model: str, out: str, dry: bool) -> dict:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    from limakit.models import load_tokenizer

    s = settings(dry)
    tok = load_tokenizer(model)
    lm = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32)
    ds = Dataset.from_list([json.loads(x) for x in Path(data).read_text().splitlines()])
    marks: list[float] = []
    losses: list[float] = []
    counts: list[tuple[int, int, int]] = []

    class Clock(TrainerCallback):
        def on_epoch_begin(self, *a, **k):
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            marks.append(time.perf_counter())

        def on_train_end(self, *a, **k):
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            marks.append(time.perf_counter())

        def on_log(self, args, state, control, logs=None, **k):
            if logs and "loss" in logs:
                losses.append(logs["loss"])

    class Counting(SFTTrainer):
        def training_step(self, model, inputs, *a, **k):
            mask = inputs.get("attention_mask")
            real = int(mask.sum()) if mask is not None else inputs["input_ids"].numel()
            counts.append((len(marks) - 1, real, inputs["input_ids"].numel()))
            return super().training_step(model, inputs, *a, **k)

    args = SFTConfig(
        output_dir=out,
        per_device_train_batch_size=s["micro_batch"],
        gradient_accumulation_steps=s["global_batch"] // s["micro_batch"],
        max_length=s["max_len"],
        learning_rate=1e-5,
        lr_scheduler_type="constant",
        adam_beta1=0.9,
        adam_beta2=0.95,
        weight_decay=0.1,
        max_grad_norm=0.0,
        num_train_epochs=2,
        logging_steps=1,
        report_to="none",
        save_strategy="no",
        gradient_checkpointing=False,
        completion_only_loss=True,
        bf16=not dry,
        use_cpu=dry,
        seed=0,
        optim="adamw_torch_fused",
        **TRL_MODES[mode],
    )
    Counting(
        model=lm, args=args, train_dataset=ds, processing_class=tok, callbacks=[Clock()]
    ).train()
    second = [c for c in counts if c[0] == 1]
    return {
        "tokens_per_s": sum(c[1] for c in second) / (marks[-1] - marks[1]),
        "padding": 1 - sum(c[1] for c in second) / sum(c[2] for c in second),
        "losses": losses[: len(losses) // 2],
        "gpu_gb": peak_memory_gb(),
    }


# Sampling: prompts, new tokens each (the dry run: 8 and 16), streaming clients of `lima serve`.
GEN = {"n": 64, "new": 256, "clients": 32}


def gen_prompts(data: str, n: int):
    from limakit.records.example import Example, Message

    rows = [json.loads(x) for x in Path(data).read_text().splitlines()[:n]]
    return [
        Example([Message("user", r["messages"][0]["content"][:3000])], id=str(i), source="bench")
        for i, r in enumerate(rows)
    ]


class EngineWatch:
    """Records the engines made inside it, how long their decode steps take and the warnings of
    a failed graph capture: the bench says which decode path ran, never assumes it."""

    def __enter__(self):
        import warnings

        from limakit.generation.engine import Engine

        self.engines, self.step_s = [], []
        self._orig = Engine.__init__, Engine._decode
        init, decode = self._orig
        watch = self

        def watched_init(engine, *a, **k):
            init(engine, *a, **k)
            watch.engines.append(engine)

        def watched_decode(engine):
            t = time.perf_counter()
            decode(engine)  # ends in the step's one device read: its wall time is the step's
            watch.step_s.append(time.perf_counter() - t)

        Engine.__init__, Engine._decode = watched_init, watched_decode
        self._warnings = warnings.catch_warnings(record=True)
        self.warned = self._warnings.__enter__()
        warnings.simplefilter("always")
        return self

    def __exit__(self, *exc):
        from limakit.generation.engine import Engine

        Engine.__init__, Engine._decode = self._orig
        self._warnings.__exit__(*exc)
        return False

    def mode(self) -> str:
        """Which decode path the last engine ran: CUDA graphs, fixed-shape eager or dynamic."""
        if not self.engines:
            return "no engine"
        return decode_mode(self.engines[-1], [str(w.message) for w in self.warned])


def decode_mode(engine, warned: list[str] = ()) -> str:
    static = engine.static
    if static is None:
        return "dynamic steps (eager)"
    if static.use_graphs:
        return f"CUDA graphs ({static.captures} shapes captured)"
    failed = [w for w in warned if "without CUDA graphs" in w]
    if failed or engine.device.type == "cuda":  # graphs were tried and given up
        return "fixed-shape steps, EAGER: " + (failed[0] if failed else "graphs off")
    return "fixed-shape steps (eager: no CUDA here)"


def gen_worker(which: str, data: str, model: str, out: str, dry: bool) -> dict:
    """Sampling throughput: limakit's engine, transformers' generate or ``lima serve``, in bf16."""
    import torch

    from limakit.generation import DecodeConfig, generate_answers
    from limakit.models import load_model_for
    from limakit.records.template import render_prompt

    n, new = (8, 16) if dry else (GEN["n"], GEN["new"])
    dev = device_name(dry)
    loaded = load_model_for(model, dev, "auto" if dry else "bfloat16")
    lm, tok = loaded.pair
    prompts = gen_prompts(data, n)

    def sync() -> None:
        if dev == "cuda":
            torch.cuda.synchronize()

    cfg = DecodeConfig(max_new_tokens=new)
    if which == "hf":
        ids = [render_prompt(p.messages, tok) for p in prompts]
        tok.padding_side = "left"
        batch = tok.pad({"input_ids": ids}, return_tensors="pt").to(dev)
        kw = dict(do_sample=True, top_p=cfg.top_p, temperature=cfg.temperature,
                  repetition_penalty=cfg.repetition_penalty, pad_token_id=tok.pad_token_id)  # fmt: skip
        with torch.inference_mode():
            lm.generate(**batch, max_new_tokens=4, **kw)  # warm-up
            sync()
            t = time.perf_counter()
            out_ids = lm.generate(**batch, max_new_tokens=new, min_new_tokens=new, **kw)
            sync()
        made = (out_ids.shape[1] - batch["input_ids"].shape[1]) * out_ids.shape[0]
    elif which in ("limakit", "limakit-eager"):
        # "limakit": fixed-shape decode steps (CUDA graphs on a GPU, run eagerly on the CPU);
        # "limakit-eager": the dynamic steps, no graphs. Graph captures count in the timing.
        graphs = which == "limakit"
        generate_answers(
            loaded,
            prompts[:2],
            config=DecodeConfig(max_new_tokens=4),
            progress=False,
            cuda_graphs=graphs,
        )  # fmt: skip  (warm-up)
        with EngineWatch() as watch:
            t = time.perf_counter()
            answers = generate_answers(
                loaded, prompts, config=cfg, batch_size=n, progress=False, cuda_graphs=graphs
            )
            sync()
            wall = time.perf_counter() - t
        made = sum(a.meta["new_tokens"] for a in answers)
        steps = watch.step_s
        return {"tokens_per_s": made / wall, "tokens": made, "gpu_gb": peak_memory_gb(),
                "decode": watch.mode(), "decode_steps": len(steps),
                "ms_per_step": 1e3 * sorted(steps)[len(steps) // 2] if steps else None}  # fmt: skip
    else:  # lima serve, one client per prompt at once
        with EngineWatch() as watch:
            made, t = serve_clients(loaded, prompts, new)
            wall = time.perf_counter() - t
        return {"tokens_per_s": made / wall, "tokens": made, "gpu_gb": peak_memory_gb(),
                "decode": watch.mode()}  # fmt: skip
    return {"tokens_per_s": made / (time.perf_counter() - t), "tokens": made,
            "gpu_gb": peak_memory_gb(), "decode": "transformers generate"}  # fmt: skip


def decode_profile(mode: str, data: str, model: str, out: str, dry: bool, steps: int = 5) -> dict:
    """Where one decode step of the engine at batch 64 spends its time (``mode``: graphs|eager).

    All prompts are prefilled, a few steps warm up (and capture the graphs), ten steps are timed
    without the profiler, then ``steps`` steps run under ``torch.profiler``: host time per step,
    device time per step and the costliest operations, as a table; the trace goes to ``out``.
    """
    import torch

    from limakit.generation.engine import Engine, Request
    from limakit.generation.graphs import StaticDecode
    from limakit.models import load_model_for
    from limakit.records.template import render_prompt

    n = 8 if dry else GEN["n"]
    dev = device_name(dry)
    loaded = load_model_for(model, dev, "auto" if dry else "bfloat16")
    prompts = gen_prompts(data, n)
    warm, timed = 4, 10
    span_step = StaticDecode.span_step

    def span_bucket(ahead: int) -> int:  # the graphs' span bucket of a step `ahead` steps on
        return -(-(max(engine.lens[: len(engine.active)]) + ahead) // span_step)

    with EngineWatch() as watch:
        engine = Engine(loaded, max_batch=n, cuda_graphs=mode == "graphs")
        for p in prompts:
            ids = render_prompt(p.messages, loaded.tokenizer)
            engine.add(Request(ids, max_new_tokens=2 + warm + timed + steps + span_step))
        for _ in range(1 + warm):  # prefill (with its first step), then warm steps
            engine.step()
        # A longer span needs new graphs: cross that boundary now, not while timing.
        while engine.active and span_bucket(timed + steps) != span_bucket(1):
            engine.step()
        watch.step_s.clear()
        for _ in range(timed):
            engine.step()
        step_ms = 1e3 * sorted(watch.step_s)[len(watch.step_s) // 2]
        activities = [torch.profiler.ProfilerActivity.CPU]
        if dev == "cuda":
            activities.append(torch.profiler.ProfilerActivity.CUDA)
        batch = len(engine.active)
        with torch.profiler.profile(activities=activities) as prof:
            for _ in range(steps):
                engine.step()
        decode = watch.mode()
    Path(out).mkdir(parents=True, exist_ok=True)
    trace = Path(out) / f"decode-{mode}-trace.json"
    prof.export_chrome_trace(str(trace))
    table = prof.key_averages()
    busy_ms = device_busy_us(table) / 1e3 / steps
    host_ms = 1e3 * sum(e.self_cpu_time_total for e in table) / 1e6 / steps
    key = "self_device_time_total" if dev == "cuda" else "self_cpu_time_total"
    text = (
        f"decode ({decode}) at batch {batch}: {step_ms:.2f} ms a step unprofiled (median of "
        f"{timed}); profiled: host ops {host_ms:.2f} ms, device kernels {busy_ms:.2f} ms a step\n"
        + table.table(sort_by=key, row_limit=20, max_name_column_width=60)
        + "\n"
        + table.table(sort_by="self_cpu_time_total", row_limit=15, max_name_column_width=60)
    )
    return {"decode": decode, "batch": batch, "ms_per_step": step_ms,
            "host_ms_per_step": host_ms, "device_ms_per_step": busy_ms,
            "trace": str(trace), "table": text}  # fmt: skip


def serve_clients(loaded, prompts, new: int) -> tuple[int, float]:
    """Start ``lima serve``'s app; 32 clients (at most) stream their answers at once."""
    import socket
    import threading

    import httpx
    import uvicorn

    from limakit.generation.server import create_app

    prompts = prompts[: GEN["clients"]]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    app = create_app(loaded, model_name="bench", max_batch=len(prompts))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    made = []

    def client(p) -> None:
        body = {"model": "bench", "messages": [m.to_dict() for m in p.messages], "max_tokens": new,
                "stream": True, "stream_options": {"include_usage": True}}  # fmt: skip
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        with httpx.stream("POST", url, json=body, timeout=600) as r:
            for line in r.iter_lines():
                if line.startswith("data: {") and '"usage"' in line:
                    usage = json.loads(line[6:]).get("usage")
                    if usage:
                        made.append(usage["completion_tokens"])

    t = time.perf_counter()
    threads = [threading.Thread(target=client, args=(p,)) for p in prompts]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    server.should_exit = True
    if len(made) != len(prompts):
        raise RuntimeError(f"{len(prompts) - len(made)} streaming clients got no usage chunk")
    return sum(made), t


def child(kind: str, mode: str, paths: dict, dry: bool, timeout: int) -> dict:
    """Run one setting in its own process; an error or a timeout becomes a row, not a crash."""
    cmd = [sys.executable, __file__, "--worker", kind, mode, json.dumps(paths)]
    cmd += ["--cpu-dry-run"] if dry else []
    if timeout < 15:
        return {"error": "skipped: the run's --budget is spent"}
    t = time.perf_counter()
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"no result within {timeout} s"}
    lines = [x for x in res.stdout.splitlines() if x.startswith("RESULT ")]
    if res.returncode != 0 or not lines:
        tail = res.stderr.strip().splitlines()[-12:]
        return {"error": f"exit {res.returncode}: " + " | ".join(tail)[-1500:]}
    return {**json.loads(lines[-1][7:]), "wall_s": time.perf_counter() - t}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--cpu-dry-run", action="store_true", help="2-layer toy on the CPU, no targets")
    p.add_argument("--tokenizer", default="smollm2-135m", help="model whose tokenizer and config")
    p.add_argument("--data", help="LIMA-shaped examples (default: drawn from the packaged pool)")
    p.add_argument("--modes", default=",".join(MODES), help="our settings, comma-separated")
    p.add_argument("--trl-modes", default=",".join(TRL_MODES), help="TRL settings ('' = none)")
    p.add_argument("--timeout", type=int, default=100, help="seconds per setting")
    p.add_argument(
        "--budget",
        type=int,
        default=0,
        help="seconds for the whole run (0: no limit); a setting gets at most what is left, and\n"
        "those left without time are reported as skipped",
    )
    p.add_argument(
        "--parts",
        default="train,gen",
        help="what to measure, in this order: train (vs TRL), gen (sampling)",
    )
    p.add_argument("--json", help="also write the rows to this JSONL file")
    p.add_argument(
        "--profile",
        metavar="MODE",
        help="instead of the comparison: profile 3 steps of one of our modes and print the table",
    )
    p.add_argument(
        "--profile-decode",
        choices=("graphs", "eager"),
        help="instead of the comparison: profile the engine's decode step at batch 64 and print\n"
        "the table (it also runs after the comparison when sampling misses 5x generate)",
    )
    p.add_argument(
        "--prepare",
        metavar="DIR",
        help="write the examples and the tokenizer (no weights) the bench needs into DIR, for a\n"
        "GPU machine without the packaged data or models, and print the command to run there",
    )
    p.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.prepare:
        prepare(Path(a.prepare), a.tokenizer)
        return 0
    dry = a.cpu_dry_run
    started = time.perf_counter()
    if a.worker:
        kind, mode, paths = a.worker[0], a.worker[1], json.loads(a.worker[2])
        fn = {"ours": ours_worker, "trl": trl_worker, "gen": gen_worker, "decode": decode_profile}
        fn = fn[kind]
        print("RESULT " + json.dumps(fn(mode, paths["data"], paths["model"], paths["out"], dry)))
        return 0

    import importlib.util

    import torch

    from limakit.models import resolve

    if not dry and not torch.cuda.is_available():
        print("bench/gpu.py: no CUDA device here; use --cpu-dry-run", file=sys.stderr)
        return 2
    dev = device_name(dry)
    s = settings(dry)
    tmp = Path(tempfile.mkdtemp(prefix="lima-gpu-bench-"))
    data = tmp / "examples.jsonl"
    if a.data:
        lines = Path(a.data).read_text().splitlines()[: s["n"]]
        data.write_text("\n".join(lines) + "\n")
    else:
        data.write_text("".join(json.dumps(r) + "\n" for r in draw_examples(s["n"])))
    model = tmp / "model"
    t = time.perf_counter()
    params = build_model(resolve(a.tokenizer), model, dry)
    peak = matmul_peak(dev)
    if dry:  # a CPU without bf16 matrix units runs bf16 far slower than fp32: use fp32 there
        fast = peak >= matmul_peak(dev, "float32")
        os.environ["LIMAKIT_BENCH_FAST_BF16"] = "1" if fast else "0"
        if not fast:
            print("this CPU has no fast bf16 matmul: the dry run trains in float32", flush=True)
    name = torch.cuda.get_device_name(0) if dev == "cuda" else "CPU"
    print(
        f"{name}: torch {torch.__version__}; model {params / 1e9:.2f}B params built in "
        f"{time.perf_counter() - t:.0f} s; bf16 matmul peak {peak / 1e12:.1f} TFLOP/s",
        flush=True,
    )
    torch.cuda.empty_cache() if dev == "cuda" else None
    if a.profile:
        profile(a.profile, str(data), str(model), str(tmp / "profile"), dry, 2 if dry else 3)
        return 0
    if a.profile_decode:
        r = decode_profile(a.profile_decode, str(data), str(model), str(tmp / "decode"), dry)
        print(r["table"] + f"\ntrace: {r['trace']}")
        return 0

    def left() -> int:
        """Seconds the next setting may take: --timeout, within what the --budget leaves."""
        if not a.budget:
            return a.timeout
        return int(min(a.timeout, a.budget - (time.perf_counter() - started)))

    rows: dict[str, dict] = {}
    trl_modes = [m for m in a.trl_modes.split(",") if m]
    if trl_modes and importlib.util.find_spec("trl") is None:
        print("TRL is not installed here: its settings are skipped", flush=True)
        trl_modes = []
    if trl_modes:
        tokens = tmp / "tokens.jsonl"
        write_tokens(data, str(model), s, tokens)
    modes = [m for m in a.modes.split(",") if m]
    if dry and a.modes == p.get_default("modes"):  # compiling on a CPU takes minutes
        modes = [m for m in modes if "compiled" not in m]
    plan = []
    for part in a.parts.split(","):
        if part == "train":  # our first mode, then TRL, then the rest: the headline comes first
            plan += [("ours", m) for m in modes[:1]] + [("trl", m) for m in trl_modes]
            plan += [("ours", m) for m in modes[1:]]
        elif part == "gen":  # the engine and transformers first: they make the headline ratio
            plan += [("gen", m) for m in ("limakit", "hf", "serve", "limakit-eager")]
        elif part:
            p.error(f"--parts: unknown part {part!r} (train, gen)")
    for kind, mode in plan:
        paths = {
            "data": str(tokens if kind == "trl" else data),
            "model": str(model),
            "out": str(tmp / f"{kind}-{len(rows)}"),
        }
        label = {"trl": "TRL ", "ours": "limakit "}.get(kind, "sampling ") + mode
        r = child(kind, mode, paths, dry, left())
        rows[label] = r
        done = r.get("error") or f"{r['tokens_per_s']:.0f} tokens/s"
        print(f"{label}: {done}", flush=True)
        if a.json:
            with open(a.json, "a") as f:
                f.write(json.dumps({"setting": label, "params": params, "peak": peak, **r}) + "\n")

    train_rows = {k: v for k, v in rows.items() if not k.startswith("sampling")}
    gen_rows = {k: v for k, v in rows.items() if k.startswith("sampling")}
    if train_rows:
        print("\n| setting | real tokens/s | padding | MFU (bf16) | peak GPU GB | first losses |")
        print("|---|---:|---:|---:|---:|---|")
    for label, r in train_rows.items():
        if "error" in r:
            print(f"| {label} | failed: {r['error'][:160]} | | | | |")
            continue
        mfu = 6 * params * r["tokens_per_s"] / peak
        losses = " ".join(f"{x:.3f}" for x in r["losses"][:4])
        print(
            f"| {label} | {r['tokens_per_s']:.0f} | {r['padding']:.0%} | {mfu:.0%} "
            f"| {r['gpu_gb']:.1f} | {losses} |"
        )
    if gen_rows:
        print(
            "\n| sampling (bf16, LIMA decoding) | new tokens/s | new tokens | ms a decode step "
            "| peak GPU GB | decode steps ran as |"
        )
        print("|---|---:|---:|---:|---:|---|")
    for label, r in gen_rows.items():
        if "error" in r:
            print(f"| {label} | failed: {r['error'][:160]} | | | | |")
        else:
            ms = f"{r['ms_per_step']:.1f}" if r.get("ms_per_step") else ""
            print(
                f"| {label} | {r['tokens_per_s']:.0f} | {r['tokens']} | {ms} "
                f"| {r['gpu_gb']:.1f} | {r['decode']} |"
            )
    failed = [label for label, r in rows.items() if "error" in r]
    ours = {
        k: v for k, v in rows.items() if k.startswith("limakit bf16-packed") and "error" not in v
    }
    pad, wrapped = rows.get("TRL padding", {}), rows.get("TRL wrapped packing (cross-attends)", {})
    if ours and "tokens_per_s" in pad and "tokens_per_s" in wrapped:
        best = max(ours, key=lambda k: ours[k]["tokens_per_s"])
        r = ours[best]
        checks = [
            ("vs TRL wrapped packing", r["tokens_per_s"] / wrapped["tokens_per_s"], 1.25),
            ("vs TRL padding", r["tokens_per_s"] / pad["tokens_per_s"], 2.5),
        ]
        print()
        for what, ratio, need in checks:
            ok = ratio >= need
            print(
                f"{best} {what}: {ratio:.2f}x (target >= {need}x)" + ("  OK" if ok else "  MISSED")
            )
            failed += [] if ok or dry else [what]
        mem_ok = r["gpu_gb"] <= pad["gpu_gb"]
        print(
            f"{best} peak memory {r['gpu_gb']:.1f} GB vs TRL padding {pad['gpu_gb']:.1f} GB"
            + ("  OK" if mem_ok else "  MISSED")
        )
        failed += [] if mem_ok or dry else ["memory"]
        for label, rr in ours.items():
            gap = max(abs(x - y) for x, y in zip(rr["losses"], pad["losses"], strict=False))
            ok = gap <= 0.05
            print(f"{label}: first losses within {gap:.4f} of TRL padding's (target <= 0.05)")
            failed += [] if ok or dry else [f"{label} loss"]
    elif not dry and train_rows:
        print("\nTRL figures missing: the speed targets could not be checked")
        failed.append("no TRL figures")
    hf = gen_rows.get("sampling hf", {}).get("tokens_per_s")
    for label, need in (("sampling limakit", 10.0), ("sampling serve", 5.0)):
        r = gen_rows.get(label, {})
        if hf and "tokens_per_s" in r:
            ratio = r["tokens_per_s"] / hf
            ok = ratio >= need
            print(f"{label} vs transformers generate: {ratio:.2f}x (target >= {need}x)"
                  + ("  OK" if ok else "  MISSED"))  # fmt: skip
            failed += [] if ok or dry else [label]
    engine = gen_rows.get("sampling limakit", {}).get("tokens_per_s")
    # Under 5x generate, where the decode step's time goes (the dry run always checks the path).
    if gen_rows and (dry or (engine and hf and engine < 5 * hf)):
        traces = Path(a.json).parent if a.json else tmp / "decode"  # the trace beside the rows
        paths = {"data": str(data), "model": str(model), "out": str(traces)}
        r = child("decode", "graphs", paths, dry, left())
        print("\n" + (r.get("table") or f"decode profile failed: {r['error']}"), flush=True)
        if a.json:
            keep = {k: v for k, v in r.items() if k != "table"}
            with open(a.json, "a") as f:
                f.write(json.dumps({"setting": "decode profile", **keep}) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
