"""`lima demo --base` end to end: wall time and peak memory against the targets.

Runs the base-model demo (gemma3-270m fine-tuned on a small curated set, against itself in plain
text and with in-context alignment) in a fresh folder, in its own process, and reads the peak RSS
of that process tree. Targets on an idle 2-core machine: at most 45 minutes and 12 GB peak RSS.

    .venv/bin/python bench/demo_base.py [--quick] [--out DIR] [--keep]

Prints a table (each stage's time from the run's stage markers, the total and the peak RSS),
then the judge-free measures of the three systems, and exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_S = 45 * 60
TARGET_RSS_GB = 12.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="the --quick demo (no targets apply)")
    ap.add_argument("--out", default=None, help="run folder (default: a temporary one)")
    ap.add_argument("--keep", action="store_true", help="keep the run folder")
    args = ap.parse_args()
    out = Path(args.out or tempfile.mkdtemp(prefix="demo-base-"))
    if out.exists():
        shutil.rmtree(out)
    cmd = [sys.executable, "-m", "limakit", "demo", "--base", "--out", str(out)]
    cmd += ["--quick"] if args.quick else []
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    start = time.perf_counter()
    rc = subprocess.run(cmd, env=env).returncode
    wall = time.perf_counter() - start
    rss_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1e6  # KiB -> GB
    if rc != 0:
        print(f"lima demo --base failed (exit {rc})", file=sys.stderr)
        return rc
    rows = []
    for marker in sorted((out / "stages").glob("*.json"), key=lambda p: p.stat().st_mtime):
        m = json.loads(marker.read_text())
        rows.append((marker.stem, m.get("seconds"), m.get("summary", "")))
    print("| stage | seconds | summary |\n|---|---:|---|")
    for name, secs, summary in rows:
        print(f"| {name} | {secs if secs is not None else '-'} | {summary[:90]} |")
    ok_time, ok_rss = wall <= TARGET_S, rss_gb <= TARGET_RSS_GB
    print(f"\n| figure | measured | target |\n|---|---:|---:|\n"
          f"| wall time | {wall / 60:.1f} min | <= {TARGET_S // 60} min |\n"
          f"| peak RSS | {rss_gb:.2f} GB | <= {TARGET_RSS_GB:.0f} GB |")  # fmt: skip
    checks = json.loads((out / "judge" / "checks.json").read_text())
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from limakit.evaluation.checks import measures_table

    print("\n" + "\n".join(measures_table(checks)))
    if not args.keep and not args.out:
        shutil.rmtree(out)
    if args.quick:
        return 0
    return 0 if ok_time and ok_rss else 1


if __name__ == "__main__":
    raise SystemExit(main())
