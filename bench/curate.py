"""Benchmark ``lima curate`` on synthetic Stack Exchange dumps of 100 MB and 1 GB.

Targets (issue 3): >= 30 MB/s of Posts.xml end to end (read, pair, filter, clean, sample, write)
and peak RSS on the 1 GB dump within 100 MB of the 100 MB dump's. Each size runs in a fresh
process so its peak RSS is its own; imports are done before the clock starts (they are a
constant, not throughput) and reported separately. The dumps are generated into a temporary
folder and deleted afterwards.

    python bench/curate.py                 # 100 MB and 1 GB
    python bench/curate.py --sizes 50      # a quick look
"""

from __future__ import annotations

import argparse
import html
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORDS = (
    "the oven heat dough salt water pan steak bread flour yeast rest time knead temperature "
    "crust sugar butter egg milk simmer boil roast grill season pepper garlic onion stock sauce "
    "acid fat protein starch gluten moisture texture flavour aroma browning reaction surface "
    "because when while until after before therefore however instead usually often rarely"
).split()


def sentence(rng: random.Random, n: int) -> str:
    words = [rng.choice(WORDS) for _ in range(n)]
    return " ".join(words).capitalize() + "."


def answer_html(rng: random.Random) -> str:
    parts = []
    for _ in range(rng.randint(2, 9)):
        kind = rng.random()
        if kind < 0.1:
            parts.append(
                "<pre><code>"
                + html.escape("temp = 180\nfor step in steps:\n    bake(step)\n")
                + "</code></pre>"
            )
        elif kind < 0.2:
            parts.append(
                "<ul>" + "".join(f"<li>{sentence(rng, 8)}</li>" for _ in range(3)) + "</ul>"
            )
        else:
            text = " ".join(sentence(rng, rng.randint(8, 20)) for _ in range(rng.randint(2, 5)))
            if rng.random() < 0.05:
                text = "I think " + text
            parts.append(
                f'<p>{text} See <a href="https://example.org/{rng.randint(1, 99)}">this guide</a>.</p>'
            )
    return "\n".join(parts)


def generate(path: Path, megabytes: int, seed: int = 0) -> None:
    """A Posts.xml in the dump's layout: one row per line, questions then their answers."""
    rng = random.Random(seed)
    target = megabytes * 1024 * 1024
    size, pid, open_questions = 0, 0, []
    with open(path, "w", encoding="utf-8") as f:
        head = '<?xml version="1.0" encoding="utf-8"?>\n<posts>\n'
        f.write(head)
        size += len(head)
        while size < target:
            pid += 1
            if not open_questions or rng.random() < 0.3:
                body = html.escape(f"<p>{sentence(rng, rng.randint(15, 60))}</p>", quote=True)
                title = html.escape(sentence(rng, rng.randint(5, 12))[:-1] + "?", quote=True)
                row = (
                    f'  <row Id="{pid}" PostTypeId="1" AcceptedAnswerId="{pid + 1}" '
                    f'CreationDate="2015-03-01T10:00:00.000" Score="{int(rng.expovariate(1 / 8)) - 1}" '
                    f'ViewCount="{rng.randint(10, 90000)}" Body="{body}" OwnerUserId="{rng.randint(1, 5000)}" '
                    f'LastActivityDate="2016-01-01T10:00:00.000" Title="{title}" Tags="&lt;baking&gt;" '
                    f'AnswerCount="2" CommentCount="0" ContentLicense="CC BY-SA 3.0" />\n'
                )
                open_questions = (open_questions + [pid])[-200:]
            else:
                body = html.escape(answer_html(rng), quote=True).replace("\n", "&#xA;")
                row = (
                    f'  <row Id="{pid}" PostTypeId="2" ParentId="{rng.choice(open_questions)}" '
                    f'CreationDate="2015-03-02T10:00:00.000" Score="{int(rng.expovariate(1 / 9)) - 1}" '
                    f'Body="{body}" OwnerUserId="{rng.randint(1, 5000)}" '
                    f'LastActivityDate="2016-01-01T10:00:00.000" CommentCount="0" ContentLicense="CC BY-SA 4.0" />\n'
                )
            f.write(row)
            size += len(row)
        f.write("</posts>\n")


def run_one(dump: str, out: str, n: int) -> None:
    """Child process: warm imports, then time one curate() call; print JSON."""
    import resource

    t0 = time.perf_counter()
    import datasketch  # noqa: F401
    import markdownify  # noqa: F401
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot  # noqa: F401

    from limakit.curation import CurateConfig, curate

    imports = time.perf_counter() - t0
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t = time.perf_counter()
    summary = curate(CurateConfig(stackexchange=[dump], n=n, out=out, progress=False))
    seconds = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "seconds": seconds,
                "imports": imports,
                "peak_rss_mb": peak,
                "rss_after_imports_mb": rss_before,
                "examples": summary["examples"],
            }
        )
    )


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--sizes", default="100,1024", help="dump sizes in MB, comma-separated")
    ap.add_argument(
        "--n", type=int, default=400, help="examples to select (LIMA: 400 from Stack Exchange)"
    )
    ap.add_argument("--min-mbps", type=float, default=30.0)
    ap.add_argument("--max-rss-growth-mb", type=float, default=100.0)
    ap.add_argument("--run", nargs=2, metavar=("DUMP", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.run:
        run_one(args.run[0], args.run[1], args.n)
        return 0
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = []
    with tempfile.TemporaryDirectory(prefix="lima-bench-") as tmp:
        for mb in sizes:
            site = Path(tmp) / f"size{mb}" / "bench.stackexchange.com"
            site.mkdir(parents=True)
            t = time.perf_counter()
            generate(site / "Posts.xml", mb)
            gen = time.perf_counter() - t
            real_mb = (site / "Posts.xml").stat().st_size / 2**20
            proc = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--n",
                    str(args.n),
                    "--run",
                    str(site.parent),
                    str(Path(tmp) / f"out{mb}"),
                ],
                capture_output=True,
                text=True,
            )
            if proc.returncode != 0:
                print(proc.stderr, file=sys.stderr)
                return 1
            res = json.loads(proc.stdout.strip().splitlines()[-1])
            rows.append((mb, real_mb, gen, res))
            shutil.rmtree(site.parent)  # free the disk before the next size
    print(
        f"{'dump':>8} {'MB':>8} {'seconds':>8} {'MB/s':>7} {'peak RSS MB':>12} {'imports s':>9} {'selected':>8}"
    )
    ok = True
    for mb, real_mb, _gen, res in rows:
        mbps = real_mb / res["seconds"]
        ok &= mbps >= args.min_mbps
        print(
            f"{mb:>6}MB {real_mb:>8.1f} {res['seconds']:>8.2f} {mbps:>7.1f} {res['peak_rss_mb']:>12.1f} "
            f"{res['imports']:>9.2f} {res['examples']:>8}"
        )
    if len(rows) >= 2:
        growth = rows[-1][3]["peak_rss_mb"] - rows[0][3]["peak_rss_mb"]
        print(
            f"peak RSS growth {rows[0][0]} MB -> {rows[-1][0]} MB: {growth:+.1f} MB "
            f"(target <= {args.max_rss_growth_mb:.0f})"
        )
        ok &= growth <= args.max_rss_growth_mb
    print(f"target >= {args.min_mbps:.0f} MB/s: {'met' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
