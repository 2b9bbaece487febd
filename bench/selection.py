"""Benchmark pool selection: 1,000 from the whole packaged ShareGPT pool (17,671 conversations).

Targets (issue 14), on 2 CPU cores: the cold run (read, hygiene rules, dedup, embed every pool
example with the packaged MiniLM, k-center select 1,000, write the card) within 5 minutes with
peak RSS under 4 GB; a second run from the embedding cache within 30 s. Then the other
embedding-free selectors run from the same cache with `--diversity always`, so the table compares
what each one picks (answer length, mean pairwise cosine distance, share of the pool's k-means
clusters covered) against `longest`, the baseline to beat.

Each run is a fresh `lima curate` process (its own peak RSS) pinned to the first --cores CPUs; the
cache is a temporary file, so the cold run really is cold.

    python bench/selection.py
    python bench/selection.py --n 200 --others random   # a quicker look
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = r"""
import json, os, resource, sys, time
cores = int(os.environ["BENCH_CORES"])
if hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) > cores:
    os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:cores])
import torch
torch.set_num_threads(cores)
from limakit.cli import main
t = time.perf_counter()
rc = main(sys.argv[1:])
seconds = time.perf_counter() - t
use = resource.getrusage(resource.RUSAGE_SELF)
cpu = use.ru_utime + use.ru_stime
print(json.dumps({"rc": rc, "seconds": seconds, "cpu": cpu, "peak_rss_mb": use.ru_maxrss / 1024}))
"""


def run(args: list[str], cores: int) -> dict:
    env = {**os.environ, "BENCH_CORES": str(cores), "OMP_NUM_THREADS": str(cores)}
    t = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, *args], capture_output=True, text=True, env=env
    )
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(f"lima {' '.join(args)} failed (exit {proc.returncode})")
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    res["wall"] = wall  # includes interpreter start and imports
    return res


def card_figures(out: Path) -> dict:
    """The selection figures the card reports (pool vs selection)."""
    card = (out / "card.md").read_text(encoding="utf-8")

    def row(label: str) -> tuple[str, str]:
        m = re.search(rf"\| {re.escape(label)} \| ([^|]+) \| ([^|]+) \|", card)
        return (m.group(1).strip(), m.group(2).strip()) if m else ("", "")

    computed = re.search(r"Computed this run \(not in the cache\): (.*?);", card)
    return {
        "pool": row("examples")[0],
        "selected": row("examples")[1],
        "answer_median": row("answer characters, median"),
        "distance": row("mean pairwise cosine distance"),
        "covered": row("pool k-means clusters covered"),
        "computed": computed.group(1) if computed else "",
    }


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--n", type=int, default=1000, help="examples to select")
    ap.add_argument("--cores", type=int, default=2, help="CPU cores each run may use")
    ap.add_argument("--select", default="diverse", help="the timed embedding selector")
    ap.add_argument(
        "--others",
        default="clusters,longest,random",
        help="selectors run afterwards from the warm cache (comma-separated; '' for none)",
    )
    ap.add_argument("--max-cold-s", type=float, default=300.0)
    ap.add_argument("--max-warm-s", type=float, default=30.0)
    ap.add_argument("--max-rss-mb", type=float, default=4096.0)
    args = ap.parse_args()

    rows = []
    with tempfile.TemporaryDirectory(prefix="lima-bench-select-") as tmp:
        base = ["curate", "--sharegpt", "packaged", "--n", str(args.n), "--no-progress",
                "--score-cache", str(Path(tmp) / "cache.sqlite"), "--device", "cpu"]  # fmt: skip
        plan = [("cold", args.select), ("warm", args.select)]
        plan += [("warm", s) for s in args.others.split(",") if s]
        for i, (kind, selector) in enumerate(plan):
            out = Path(tmp) / f"out{i}"
            extra = ["--diversity", "always"] if selector in ("longest", "random") else []
            res = run([*base, "--select", selector, "--out", str(out), *extra], args.cores)
            rows.append((kind, selector, res, card_figures(out)))
            print(f"{kind:>4} {selector:<9} {res['seconds']:7.1f} s", file=sys.stderr)

    print(
        f"ShareGPT pool (packaged), n={args.n}, {args.cores} CPU cores, embedder all-minilm-l6-v2"
    )
    print(
        f"{'run':<5} {'selector':<9} {'curate s':>8} {'wall s':>7} {'CPU s':>6} {'peak RSS MB':>11} "
        f"{'pool':>6} {'picked':>6} {'answer median':>13} {'cos dist':>8} {'clusters':>13}  computed"
    )
    for kind, selector, res, fig in rows:
        print(
            f"{kind:<5} {selector:<9} {res['seconds']:>8.1f} {res['wall']:>7.1f} {res['cpu']:>6.0f} "
            f"{res['peak_rss_mb']:>11.0f} {fig['pool']:>6} {fig['selected']:>6} "
            f"{fig['answer_median'][1]:>13} {fig['distance'][1]:>8} {fig['covered'][1]:>13}  "
            f"{fig['computed']}"
        )
    pool_fig = rows[0][3]
    print(
        f"pool: answer median {pool_fig['answer_median'][0]} characters, mean pairwise cosine "
        f"distance {pool_fig['distance'][0]}, {pool_fig['covered'][0]} k-means clusters"
    )
    cold, warm = rows[0][2], rows[1][2]
    peak = max(r[2]["peak_rss_mb"] for r in rows)
    checks = [
        (f"cold run <= {args.max_cold_s:.0f} s", cold["wall"] <= args.max_cold_s, cold["wall"]),
        (f"warm run <= {args.max_warm_s:.0f} s", warm["wall"] <= args.max_warm_s, warm["wall"]),
        (f"peak RSS <= {args.max_rss_mb:.0f} MB", peak <= args.max_rss_mb, peak),
    ]
    ok = True
    for label, met, value in checks:
        print(f"target {label}: {value:.1f} {'met' if met else 'MISSED'}")
        ok &= met
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
