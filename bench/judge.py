"""Judge throughput: 200 pairwise judgements (400 calls) against a local server answering in 200 ms.

Targets: under 10 s wall time at concurrency 16, and a cached rerun under 1 s. The server runs in
its own process (like a real endpoint), so its threads do not compete with the judge for the GIL.
Run from the project root: ``.venv/bin/python bench/judge.py``. Exits 1 when a target is missed.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # for the test server and fixtures

from limakit.evaluation import JudgeConfig, judge_pairwise  # noqa: E402
from tests.evaluation.helpers import write_pair  # noqa: E402

PAIRS, DELAY, CONCURRENCY = 200, 0.2, 16
TARGET_COLD, TARGET_CACHED = 10.0, 1.0


def server_calls(url: str) -> int:
    with urllib.request.urlopen(url.removesuffix("/v1") + "/stats") as r:
        return json.loads(r.read())["calls"]


def main() -> int:
    server = subprocess.Popen(
        [sys.executable, "-m", "tests.evaluation.fake_server", str(DELAY)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        url = server.stdout.readline().strip()
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            a_texts = [f"GOOD answer {i} " * 20 if i % 3 else f"weak {i}" for i in range(PAIRS)]
            b_texts = [f"weak answer {i} " * 20 for i in range(PAIRS)]
            a, b = write_pair(tmp, a_texts, b_texts)
            cfg = JudgeConfig(
                backend="openai", model="judge", base_url=url, concurrency=CONCURRENCY
            )
            t0 = time.perf_counter()
            cold = judge_pairwise(a, b, cfg, tmp / "out")
            t_cold = time.perf_counter() - t0
            calls_cold = server_calls(url)
            t0 = time.perf_counter()
            warm = judge_pairwise(a, b, cfg, tmp / "out")
            t_warm = time.perf_counter() - t0
            calls_warm = server_calls(url) - calls_cold
    finally:
        server.kill()
        server.wait()

    ideal = 2 * PAIRS * DELAY / CONCURRENCY
    rows = [
        ("cold run", t_cold, TARGET_COLD, calls_cold, t_cold < TARGET_COLD),
        ("cached rerun", t_warm, TARGET_CACHED, calls_warm, t_warm < TARGET_CACHED and calls_warm == 0),
    ]  # fmt: skip
    print(
        f"{PAIRS} pairs x 2 orders, server delay {DELAY * 1000:.0f} ms, concurrency {CONCURRENCY}"
    )
    print(f"(ideal cold time {ideal:.1f} s; win {cold['win']:.3f}, invalid {cold['invalid']})")
    print(f"| {'run':14s} | {'time':>8s} | {'target':>8s} | {'calls':>5s} | ok  |")
    print("|" + "-" * 16 + "|" + "-" * 10 + "|" + "-" * 10 + "|" + "-" * 7 + "|-----|")
    for name, t, target, calls, ok in rows:
        print(
            f"| {name:14s} | {t:>6.2f} s | {'< ' + format(target, 'g') + ' s':>8s} | "
            f"{calls:>5d} | {'yes' if ok else 'NO':3s} |"
        )
    correct = cold["invalid"] == 0 and warm["win"] == cold["win"] and calls_cold == 2 * PAIRS
    if not correct:
        print("verdicts or call counts are wrong")
    return 0 if all(r[-1] for r in rows) and correct else 1


if __name__ == "__main__":
    sys.exit(main())
