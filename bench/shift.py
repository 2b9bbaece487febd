"""Token-distribution shift speed: 100 answers x 300 tokens ranked under the packaged SmolLM2.

The answers are the first 100 ShareGPT answers of at least 300 tokens (the packaged pool) to
questions of at most 1,000 characters, cut to 300 tokens and recorded as SmolLM2's answers to their questions in limakit's format (greedy, cut by
length), so ``shift_summary`` measures them exactly as ``lima shift`` would: contexts rendered,
teacher-forced batches, ranks, the figures, ``shift.json``, ``tokens.jsonl`` and ``shift.html``.
On 2 threads by default (``--threads``), in the commands' default dtype (``auto``: bf16 where the
CPU multiplies bf16 at full speed). Prints a table; exits 1 if the measurement (the model already
loaded) takes over 60 s. Usage: ``.venv/bin/python bench/shift.py``.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

from limakit.core.files import write_jsonl  # noqa: E402
from limakit.evaluation.shift import shift_summary  # noqa: E402
from limakit.models import load_model_for  # noqa: E402
from limakit.records.template import encode_text  # noqa: E402

TARGET_S = 60.0


def answers(tok, n: int, tokens: int, scan: int = 6000) -> list[dict]:
    """``n`` ShareGPT first exchanges whose answer has at least ``tokens`` tokens, cut there."""
    from limakit.sources.sharegpt import ShareGPTStream

    rows = []
    for obj in ShareGPTStream("packaged").records():
        if len(rows) >= n or scan == 0:
            break
        scan -= 1
        turns = obj.get("conversations") or []
        if len(turns) < 2 or turns[0].get("from") != "human" or turns[1].get("from") != "gpt":
            continue
        question, answer = turns[0].get("value", "").strip(), turns[1].get("value", "").strip()
        if not question or len(question) > 1000 or len(answer) < 3 * tokens:
            continue
        ids = encode_text(tok, answer)
        if len(ids) < tokens:
            continue
        text = tok.decode(ids[:tokens]).strip()
        rows.append({
            "id": str(obj.get("id", len(rows))), "source": "sharegpt",
            "messages": [{"role": "user", "content": question},
                         {"role": "assistant", "content": text}],
            "meta": {"sample": 0, "model": "smollm2-135m", "template": "limakit",
                     "decoding": {"temperature": 0.0, "top_p": 1.0, "repetition_penalty": 1.0},
                     "stop": "length", "new_tokens": tokens},
        })  # fmt: skip
    if len(rows) < n:
        raise SystemExit(f"only {len(rows)} ShareGPT answers of {tokens}+ tokens in the pool")
    return rows


def matmul_gflops(dtype: torch.dtype, seconds: float = 2.0) -> float:
    """This machine's matrix-multiply throughput now, at the model's shapes: on a shared machine
    it says how much of the CPU the measurement had."""
    a = torch.randn(4096, 576, dtype=dtype)
    w = torch.randn(1536, 576, dtype=dtype)
    torch.nn.functional.linear(a, w)
    n, t = 0, time.perf_counter()
    while time.perf_counter() - t < seconds:
        torch.nn.functional.linear(a, w)
        n += 1
    return n * 2 * 4096 * 576 * 1536 / (time.perf_counter() - t) / 1e9


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--answers", type=int, default=100)
    ap.add_argument("--tokens", type=int, default=300)
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--batch-tokens", type=int, default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    t = time.perf_counter()
    base = load_model_for("smollm2-135m", args.device, args.dtype, "limakit")
    load_s = time.perf_counter() - t
    rows = answers(base.tokenizer, args.answers, args.tokens)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "answers.jsonl"
        write_jsonl(path, rows)
        t = time.perf_counter()
        s = shift_summary(base, [path], Path(tmp) / "shift", batch_tokens=args.batch_tokens)
        measure_s = time.perf_counter() - t
    f = s["files"][0]
    met = measure_s <= TARGET_S
    gflops = matmul_gflops(base.dtype)
    print(f"| answers | tokens ranked | device | dtype | threads | load | measure | tokens/s | "
          f"unshifted | shifted | peak RSS |\n|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---:|\n"
          f"| {f['n']} | {f['tokens']} | {s['device']} | {s['dtype']} | {args.threads} | "
          f"{load_s:.1f} s | **{measure_s:.1f} s** | {f['tokens'] / measure_s:.0f} | "
          f"{100 * f['unshifted']['value']:.1f}% | {100 * f['shifted']['value']:.1f}% | "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB |")  # fmt: skip
    print(f"target: measure <= {TARGET_S:.0f} s: {'met' if met else 'MISSED'}; load average "
          f"{os.getloadavg()[0]:.1f} (the machine may be shared); {s['dtype']} matmul at the "
          f"model's shapes just after: {gflops:.0f} GFLOP/s")  # fmt: skip
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
