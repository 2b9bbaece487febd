"""Back-translation end to end on the CPU: the packaged SmolLM2-135M as backward and forward model.

Seed: limakit's packaged hand-written examples plus the first pairs of the packaged ShareGPT pool
with answers of 200-1,200 characters (36 in all). Texts: 200 Stack Exchange answers from a site
written for this bench (``bench/backtranslate_data.py``). Two rounds, threshold 5.

Targets: the whole loop in under 20 minutes (on 2 CPU cores), and written instructions closer to
their real question than to a random other question of the pool (mean cosine, MiniLM).
Prints wall time per step, token counts and the similarity figure; exits 1 when a target is missed.

    .venv/bin/python bench/backtranslate.py                 # 200 texts, into a temporary folder
    .venv/bin/python bench/backtranslate.py --texts 40 --out bt-bench
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

TARGET_S = 20 * 60
SEED_SHAREGPT = 30


def seed_file(path: Path) -> int:
    from importlib import resources

    from limakit.records.example import write_examples
    from limakit.sources.manual import read_manual
    from limakit.sources.sharegpt import ShareGPTStream

    with resources.as_file(resources.files("limakit.data") / "demo/manual.jsonl") as manual:
        seed = [ex for ex in read_manual(manual) if ex.answer is not None]
    for ex in ShareGPTStream("packaged").examples(turns="first"):
        if len(seed) >= 6 + SEED_SHAREGPT:
            break
        if hasattr(ex, "answer") and ex.answer and 200 <= len(ex.answer) <= 1200:
            seed.append(ex)
    return write_examples(path, seed)


def trained_tokens(run: Path) -> int:
    path = run / "metrics.jsonl"
    if not path.exists():
        return 0
    return sum(int(json.loads(line).get("real_tokens", 0)) for line in path.open() if line.strip())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--texts", type=int, default=200, help="Stack Exchange answers (default 200)")
    ap.add_argument("--out", help="output folder (default: a temporary one)")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()

    from backtranslate_data import posts_xml

    from limakit.backtranslate import BacktranslateConfig, backtranslate
    from limakit.core.config import read_yaml_mapping

    work = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="bt-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    n_texts = posts_xml(work / "inputs/howto.stackexchange.com/Posts.xml", args.texts)
    n_seed = seed_file(work / "inputs/seed.jsonl")
    train = read_yaml_mapping(ROOT / "limakit/data/configs/demo-train.yaml")
    train.update(max_len=384, compile=False)
    cfg = BacktranslateConfig.model_validate(
        {
            "seed": str(work / "inputs/seed.jsonl"),
            "texts": [str(work / "inputs/howto.stackexchange.com")],
            "out": str(work / "out"),
            "rounds": args.rounds,
            "train": train,
            "hygiene": {"limits": {"min_answer_chars": 200, "max_answer_chars": 2000}},
            "augment": {"decode": {"max_new_tokens": 48}, "max_text_tokens": 256, "device": "cpu"},
            "rate": {"threshold": 5, "device": "cpu", "max_prompt_tokens": 768, "batch_size": 8},
            "embed_device": "cpu",
            "progress": False,
        }
    )
    print(f"seed {n_seed} pairs, {n_texts} texts, {args.rounds} rounds -> {cfg.out}", flush=True)
    t0 = time.perf_counter()
    summary = backtranslate(cfg)
    wall = time.perf_counter() - t0
    steps = summary["steps"]
    out = Path(cfg.out)

    print("\n| step | seconds | what |")
    print("|---|---|---|")
    for name, info in steps.items():
        what = {k: v for k, v in info.items() if k not in ("seconds", "similarity", "plots")}
        if name in ("backward",) or name.startswith("forward-"):
            what["trained_tokens"] = trained_tokens(out / name / "run")
            what.pop("checkpoint", None)
        if name == "augment" and info.get("seconds"):
            what["generated_tok_per_s"] = round(info.get("new_tokens", 0) / info["seconds"], 1)
        print(f"| {name} | {info.get('seconds', '-')} | {json.dumps(what)} |")
    print(f"| **total** | {wall:.1f} | |")

    sim = steps.get("card", {}).get("similarity", {})
    print(
        f"\ninstruction vs real question: mean cosine {sim.get('matched')} (sd "
        f"{sim.get('matched_sd')}); vs a random other question {sim.get('random')} (sd "
        f"{sim.get('random_sd')}); n={sim.get('n')}; kept pairs {sim.get('kept_matched')} "
        f"(n={sim.get('kept_n')})"
    )
    failed = []
    if wall > TARGET_S:
        failed.append(f"whole loop {wall:.0f} s > {TARGET_S} s")
    if sim.get("matched") is None or sim["matched"] <= sim["random"]:
        failed.append("written instructions not closer to their question than to a random one")
    for f in failed:
        print(f"MISSED: {f}")
    if not failed:
        print(f"targets met: {wall:.0f} s < {TARGET_S} s; similarity above the random baseline")
    print(f"card: {out / 'card.md'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
