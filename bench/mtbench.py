"""MT-Bench end to end on 2 CPU cores: the packaged model answers, the packaged model judges.

The packaged SmolLM2-135M answers all 80 questions (two turns, at most 256 new tokens a turn,
FastChat's temperature per category), then grades them: ``lima serve`` runs the same model as an
OpenAI-compatible endpoint in a subprocess on a free loopback port, and a judge config points
``lima mt-bench``'s grading at it with replies capped at 128 tokens. Target: under 15 minutes in
all, server start included. A 135M judge often fails to write FastChat's ``[[N]]`` rating; those
replies are counted (score -1, left out of every mean), not hidden.

Printed: wall time and tokens/s per phase (turn-1 answers, turn-2 answers, judge server start,
judging), the per-category table and the number of unparsable judge replies. Exits 1 when the
target is missed or nothing could be graded.

    .venv/bin/python bench/mtbench.py                 # the full run (80 questions)
    .venv/bin/python bench/mtbench.py --questions 4   # a quick dry run (4 questions, spread)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODEL = "smollm2-135m"
SERVE = "import sys; from limakit.cli import main; sys.exit(main(sys.argv[1:]))"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pin(cores: int) -> None:
    """Keep this process (and the server it starts) on the first ``cores`` CPUs."""
    os.environ["OMP_NUM_THREADS"] = str(cores)
    if hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) > cores:
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:cores])
    import torch

    torch.set_num_threads(cores)


def spread(questions: list[dict], n: int) -> list[dict]:
    """``n`` questions evenly spaced over the file (so over its categories, which come in runs)."""
    n = max(1, min(n, len(questions)))
    return [questions[i * len(questions) // n] for i in range(n)]


class TurnTimer:
    """Wraps the engine's ``generate_answers`` to time each turn and count its new tokens."""

    def __init__(self, inner):
        self.inner = inner
        self.turns: dict[int, dict] = {}

    def __call__(self, *args, **kw):
        t = time.perf_counter()
        out = self.inner(*args, **kw)
        m = re.search(r"turn(\d+)-", str(kw.get("out", "")))
        turn = int(m.group(1)) if m else 0
        rec = self.turns.setdefault(turn, {"seconds": 0.0, "tokens": 0, "answers": 0})
        rec["seconds"] += time.perf_counter() - t
        rec["tokens"] += sum(int(ex.meta.get("new_tokens") or 0) for ex in out)
        rec["answers"] += len(out)
        return out


def start_server(
    model_dir: str, port: int, judge_tokens: int, batch: int, dtype: str
) -> subprocess.Popen:
    cmd = [sys.executable, "-c", SERVE, "serve", "--model", model_dir,
           "--host", "127.0.0.1", "--port", str(port), "--model-name", MODEL,
           "--device", "cpu", "--dtype", dtype, "--batch-size", str(batch),
           "--temperature", "0", "--repetition-penalty", "1",
           "--max-new-tokens", str(judge_tokens)]  # fmt: skip
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace")[-3000:]
            raise SystemExit(f"lima serve exited ({proc.returncode}):\n{err}")
        try:
            with urllib.request.urlopen(url + "/models", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"lima serve did not answer at {url} within {timeout:.0f} s")


def answer(model_dir: str, qpath: Path, out: Path, args) -> dict[int, dict]:
    import limakit.generation as generation
    from limakit.evaluation.mtbench.answering import answer_questions
    from limakit.evaluation.mtbench.files import read_questions
    from limakit.generation.batch import model_for_answers

    timer = TurnTimer(generation.generate_answers)
    generation.generate_answers = timer  # answer_questions looks it up at call time
    # lima mt-bench's defaults (FastChat's): no nucleus cut, no repetition penalty
    config = generation.DecodeConfig(
        max_new_tokens=args.max_new_tokens, top_p=1.0, repetition_penalty=1.0
    )
    load = model_for_answers(model_dir, device="cpu", dtype=args.dtype, template=config.template)
    try:
        answer_questions(
            load,
            read_questions(qpath),
            out,
            MODEL,
            config,
            batch_size=args.batch_size,
            progress=False,
        )
    finally:
        generation.generate_answers = timer.inner
    return timer.turns


def judge(model_dir: str, qpath: Path, out: Path, args) -> tuple[dict, float, float, int]:
    """Serve the judge, grade, stop it: (result, server start s, judging s, judge reply tokens)."""
    from transformers import AutoTokenizer

    from limakit.evaluation.mtbench.single import run_mtbench
    from limakit.judging.config import JudgeConfig

    port = free_port()
    url = f"http://127.0.0.1:{port}/v1"
    t = time.perf_counter()
    proc = start_server(model_dir, port, args.judge_tokens, args.batch_size, args.dtype)
    try:
        wait_ready(url, proc)
        t_start = time.perf_counter() - t
        cfg = JudgeConfig(backend="openai", model=MODEL, base_url=url,
                          api_key_env="LIMA_BENCH_NO_KEY", concurrency=args.batch_size,
                          temperature=0.0, max_tokens=args.judge_tokens, timeout=600,
                          max_retries=1, bootstrap=200)  # fmt: skip
        os.environ["LIMA_BENCH_NO_KEY"] = "local"  # the local server asks for no key
        t = time.perf_counter()
        result = run_mtbench(out, model=model_dir, model_id=MODEL, judge=cfg,
                             questions_path=qpath, progress=False)  # fmt: skip
        t_judge = time.perf_counter() - t
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    tok = AutoTokenizer.from_pretrained(model_dir)
    replies = [
        json.loads(line)["judgment"]
        for line in Path(result["judge"]["file"]).read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    tokens = sum(len(tok(r, add_special_tokens=False)["input_ids"]) for r in replies)
    return result, t_start, t_judge, tokens


def report(turns: dict, t_start: float, t_judge: float, judge_tokens: int, result: dict) -> list:
    """Print the phase table and the scores; return the phase rows."""
    from limakit.evaluation.mtbench.single import table_lines

    c = result["counts"]
    graded = c["judged"] + c["skipped"]
    rows = [(f"answers, turn {k}", v["seconds"], v["tokens"], f"{v['answers']} answers")
            for k, v in sorted(turns.items())]  # fmt: skip
    rows += [("judge server start", t_start, 0, "load + first /v1/models"),
             ("judging", t_judge, judge_tokens, f"{graded} grades (reply tokens retokenized)")]  # fmt: skip
    print(f"| {'phase':20s} | {'wall s':>7s} | {'tokens':>7s} | {'tokens/s':>8s} | note")
    print("|" + "-" * 22 + "|" + "-" * 9 + "|" + "-" * 9 + "|" + "-" * 10 + "|------")
    for name, secs, toks, note in rows:
        rate = f"{toks / secs:8.1f}" if toks and secs else f"{'-':>8s}"
        print(f"| {name:20s} | {secs:7.1f} | {toks:7d} | {rate} | {note}")
    print()
    for line in table_lines(result["models"]):
        print(line)
    m = result["models"].get(MODEL, {"unparsable": 0, "judged": 0})
    print(
        f"unparsable judge replies (no [[N]] rating): {m['unparsable']} of {m['judged']}; "
        f"failed calls: {c['errors']}"
    )
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--questions", type=int, default=80, help="questions, spread (default 80)")
    ap.add_argument("--max-new-tokens", type=int, default=256, help="per turn (default 256)")
    ap.add_argument("--judge-tokens", type=int, default=128, help="judge reply cap (default 128)")
    ap.add_argument("--batch-size", type=int, default=16, help="sequences decoded together")
    ap.add_argument("--cores", type=int, default=2, help="CPU cores (default 2)")
    ap.add_argument(
        "--dtype",
        default="auto",
        help="weights dtype of the answering and the judging model; default auto, as in "
        "`lima mt-bench` and `lima serve` (bfloat16 where this CPU multiplies it fast)",
    )
    ap.add_argument("--target-minutes", type=float, default=15.0, help="default 15")
    ap.add_argument("--out", help="keep the output folder here (default: a temporary one)")
    args = ap.parse_args(argv)
    pin(args.cores)
    from limakit.core.files import write_jsonl
    from limakit.evaluation.mtbench.files import default_paths, read_questions
    from limakit.models import resolve, resolve_runtime

    dtype = resolve_runtime("cpu", args.dtype).dtype_name
    t0 = time.perf_counter()
    model_dir = resolve(MODEL)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out) if args.out else Path(tmp) / "mtbench"
        out.mkdir(parents=True, exist_ok=True)
        qpath = out / "questions.jsonl"
        write_jsonl(qpath, spread(read_questions(default_paths()["questions"]), args.questions))
        turns = answer(model_dir, qpath, out, args)
        result, t_start, t_judge, judge_tokens = judge(model_dir, qpath, out, args)
        total = time.perf_counter() - t0
        n = sum(1 for line in qpath.read_text().splitlines() if line.strip())
        print(f"MT-Bench, {n} questions, {MODEL} answering and judging in {dtype}, {args.cores} "
              f"CPU cores, {args.max_new_tokens} new tokens per turn, judge replies <= "
              f"{args.judge_tokens}")  # fmt: skip
        report(turns, t_start, t_judge, judge_tokens, result)
    target = args.target_minutes * 60
    ok = total < target
    print(f"total wall time {total:.1f} s (target < {target:.0f} s): {'ok' if ok else 'MISSED'}")
    graded = result["models"].get(MODEL, {}).get("overall", {}).get("n", 0)
    if not graded:
        print("no grade could be parsed from the judge's replies")
    return 0 if ok and graded else 1


if __name__ == "__main__":
    sys.exit(main())
