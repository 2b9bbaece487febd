"""Generation throughput: limakit's continuous batching vs transformers' ``generate``.

32 LIMA-shaped prompts (first user turns from the packaged ShareGPT pool, prompt lengths spread
log-evenly over 35-1,049 tokens, in pool = arrival order), 128 new tokens each, LIMA decoding
(top_p 0.9, temperature 0.7, repetition penalty 1.2), packaged SmolLM2-135M, all in one run:

- limakit ``generate_answers``, continuous batching, pool of 16, in each dtype compared;
- transformers ``generate`` in the same dtype, batches of 8 in arrival order (left padding);
- transformers ``generate`` fp32, one prompt at a time (on an evenly spread subset, it is slow);
- ``lima serve`` under 16 concurrent clients (32 requests, 128 tokens each).

Each ratio compares like with like (both sides in the same dtype): fp32 always, bf16 too where
the CPU multiplies bf16 at full speed (``--dtypes`` to choose). Prints tokens/s and peak RSS;
exits 1 if limakit is below 3x the batched-8 figure of its dtype or 6x the fp32 one-at-a-time
figure measured in the same run. Usage: ``.venv/bin/python bench/generate.py``.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import threading
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

from limakit.generation import DecodeConfig, generate_answers  # noqa: E402
from limakit.models import LoadedModel, load_model_for  # noqa: E402
from limakit.records.example import Example, Message  # noqa: E402
from limakit.records.template import render_prompt  # noqa: E402

NEW = 128


def sharegpt_prompts(
    tok, n: int = 32, lo: int = 35, hi: int = 1049, scan: int = 4000
) -> tuple[list[Example], list[int]]:
    """``n`` first user turns whose rendered prompt lengths spread log-evenly over [lo, hi]."""
    from limakit.sources.sharegpt import ShareGPTStream

    pool = []
    for obj in ShareGPTStream("packaged").records():  # stops cleanly where the file is cut off
        if len(pool) >= scan:
            break
        turns = obj.get("conversations") or []
        value = turns[0].get("value", "") if turns else ""
        # Skip texts far too long to fit before tokenising them (over ~12 characters per token).
        if turns[0:1] and turns[0].get("from") == "human" and value.strip() and len(value) < 12_000:
            msgs = [Message("user", turns[0]["value"].strip())]
            length = len(render_prompt(msgs, tok))
            if lo <= length <= hi:
                pool.append((length, Example(messages=msgs, source="sharegpt", id=obj["id"])))
    targets = [lo * (hi / lo) ** (i / (n - 1)) for i in range(n)]
    chosen, used = [], set()
    for t in targets:
        best = min(
            (i for i in range(len(pool)) if i not in used), key=lambda i: abs(pool[i][0] - t)
        )
        used.add(best)
        chosen.append(best)
    chosen.sort()  # arrival order = order in the pool
    return [pool[i][1] for i in chosen], [pool[i][0] for i in chosen]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_limakit(loaded: LoadedModel, prompts, batch) -> tuple[float, int]:
    cfg = DecodeConfig(max_new_tokens=NEW)
    t = time.perf_counter()
    answers = generate_answers(loaded, prompts, config=cfg, batch_size=batch, progress=False)
    dt = time.perf_counter() - t
    return dt, sum(a.meta["new_tokens"] for a in answers)


def hf_kwargs(tok):
    return dict(
        do_sample=True,
        top_p=0.9,
        temperature=0.7,
        repetition_penalty=1.2,
        max_new_tokens=NEW,
        pad_token_id=tok.pad_token_id,
    )


def run_hf(model, tok, ids: list[list[int]], batch: int) -> tuple[float, int]:
    eot = model.generation_config.eos_token_id
    tok.padding_side = "left"
    total, t = 0, time.perf_counter()
    for i in range(0, len(ids), batch):
        enc = tok.pad({"input_ids": ids[i : i + batch]}, return_tensors="pt")
        with torch.inference_mode():
            out = model.generate(**enc, **hf_kwargs(tok))
        for row in out[:, enc["input_ids"].shape[1] :].tolist():
            total += row.index(eot) if eot in row else len(row)
    return time.perf_counter() - t, total


def run_serve(loaded: LoadedModel, prompts, clients: int = 16) -> tuple[float, int]:
    import socket

    import openai
    import uvicorn

    from limakit.generation.server import create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = create_app(loaded, model_name="bench", max_batch=16)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0)
    todo = list(enumerate(prompts))
    lock, tokens = threading.Lock(), [0]

    def worker():
        while True:
            with lock:
                if not todo:
                    return
                i, p = todo.pop(0)
            r = client.chat.completions.create(
                model="bench",
                messages=[m.to_dict() for m in p.messages],
                max_tokens=NEW,
                seed=i,
            )
            with lock:
                tokens[0] += r.usage.completion_tokens

    t = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    dt = time.perf_counter() - t
    server.should_exit = True
    return dt, tokens[0]


def main() -> int:
    from limakit.models import bf16_is_fast

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--single-subset", type=int, default=8, help="prompts for HF one-at-a-time")
    ap.add_argument(
        "--dtypes",
        default=None,
        help="weights dtypes to compare, each run by both limakit and transformers "
        "(default: float32, plus bfloat16 where this CPU multiplies bf16 at full speed)",
    )
    args = ap.parse_args()
    dtypes = (args.dtypes or ("float32,bfloat16" if bf16_is_fast("cpu") else "float32")).split(",")
    torch.manual_seed(0)
    tok = load_model_for("smollm2-135m", "cpu", "float32").tokenizer  # with the limakit format
    prompts, lengths = sharegpt_prompts(tok)
    ids = [render_prompt(p.messages, tok) for p in prompts]
    print(
        f"{len(prompts)} ShareGPT prompts, {min(lengths)}-{max(lengths)} tokens "
        f"(mean {sum(lengths) / len(lengths):.0f}), {NEW} new tokens each; "
        f"{torch.get_num_threads()} threads; SmolLM2-135M (4-bit GGUF dequantised)"
    )
    short = {"float32": "fp32", "bfloat16": "bf16"}
    rates: dict[tuple[str, str], float] = {}

    def row(name, dtype, dt, n):
        rates[(name, dtype)] = n / dt
        print(
            f"  {name:<44} {short[dtype]:<5} {n:>6} tok {dt:>7.1f} s {n / dt:>7.1f} tok/s",
            flush=True,
        )

    ours, batched8 = "limakit generate (continuous, pool 16)", "transformers generate, batches of 8"
    for dtype in dtypes:
        model = load_model_for("smollm2-135m", "cpu", dtype).model
        loaded = LoadedModel.of(model, tok)  # one tokenizer for every dtype, as the prompts were
        row(ours, dtype, *run_limakit(loaded, prompts, args.batch_size))
        if dtype == dtypes[-1]:
            row("lima serve, 16 concurrent clients", dtype, *run_serve(loaded, prompts))
        row(batched8, dtype, *run_hf(model, tok, ids, 8))
        if dtype == "float32":
            k = args.single_subset
            subset = [ids[round(i * (len(ids) - 1) / max(1, k - 1))] for i in range(k)]
            row("transformers generate, 1 at a time", dtype, *run_hf(model, tok, subset, 1))
        del model, loaded
    print(f"\npeak RSS: {peak_rss_mb():.0f} MB")
    ok = True
    for dtype in dtypes:  # like with like: both sides in the same dtype
        ratio = rates[(ours, dtype)] / rates[(batched8, dtype)]
        ok &= ratio >= 3
        print(f"limakit / transformers batched-8, both {short[dtype]}: {ratio:.2f}x (target >= 3x)")
    single = rates[("transformers generate, 1 at a time", "float32")]
    ratio = rates[(ours, "float32")] / single
    ok &= ratio >= 6
    print(f"limakit / transformers one-at-a-time, both fp32: {ratio:.2f}x (target >= 6x)")
    print("PASS" if ok else "FAIL: below target")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
