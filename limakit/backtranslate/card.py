"""The card of a back-translation run: ``card.md`` and its plots, from the files the steps wrote.

- counts and wall time per step and round, and every drop by rule;
- the score histogram of each round (``scores.png``) and one example of each score;
- text lengths of the kept pairs against the dropped texts and pairs (``lengths.png``);
- instruction quality: on texts whose real question is known (Stack Exchange answers), the mean
  cosine similarity between the written instruction and the real question, against the same
  figure for a random other question of the pool (``similarity.png``). A backward model that reads
  its text writes instructions much closer to the real question than to a random one.
"""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import numpy as np

from limakit.core.files import atomic_write, read_jsonl_records


def _rows(path: Path) -> list[dict]:
    return [row for _, row in read_jsonl_records(path)] if path.exists() else []


def _cut(text: str, n: int = 300) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= n else text[: n - 1] + "…"


def _md(text: str) -> str:
    return _cut(text).replace("|", "\\|")


def _save(fig, path: Path) -> None:
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png", dpi=110, bbox_inches="tight")


def similarity(pairs: list[dict], embedder: str, device: str, seed: int) -> dict:
    """Mean cosine(instruction, its real question) and mean cosine(instruction, a random other
    question of the pool), over the pairs whose question is known."""
    known = [p for p in pairs if (p.get("meta") or {}).get("question")]
    if len(known) < 2:
        return {"n": len(known), "note": "fewer than two texts with a known question"}
    from limakit.embeddings import Embedder

    model = Embedder(embedder, device=device)
    instr = model.embed([p["instruction"] for p in known])
    quest = model.embed([p["meta"]["question"] for p in known])
    n = len(known)
    rng = random.Random(seed)
    other = [(i + rng.randrange(1, n)) % n for i in range(n)]  # never the pair's own question
    matched = np.sum(instr * quest, axis=1)
    shuffled = np.sum(instr * quest[other], axis=1)
    return {
        "n": n,
        "matched": round(float(matched.mean()), 4),
        "random": round(float(shuffled.mean()), 4),
        "matched_sd": round(float(matched.std()), 4),
        "random_sd": round(float(shuffled.std()), 4),
        "ids": [p["id"] for p in known],
        "per_pair": [round(float(x), 4) for x in matched],
    }


def _plots(root: Path, rounds: dict[int, list[dict]], kept_len, dropped_len, sim) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made = []
    fig, ax = plt.subplots(figsize=(6, 3.2))
    width = 0.8 / max(len(rounds), 1)
    for j, (k, rows) in enumerate(sorted(rounds.items())):
        c = Counter(r["score"] for r in rows)
        xs = [1, 2, 3, 4, 5, 6]
        ax.bar(
            [x + (j - (len(rounds) - 1) / 2) * width for x in xs],
            [c.get(s, 0) for s in [1, 2, 3, 4, 5, None]],
            width=width,
            label=f"round {k}",
        )
    ax.set_xticks([1, 2, 3, 4, 5, 6], ["1", "2", "3", "4", "5", "unparsable"])
    ax.set_xlabel("score")
    ax.set_ylabel("pairs")
    ax.legend()
    ax.set_title("Self-curation scores")
    _save(fig, root / "scores.png")
    plt.close(fig)
    made.append("scores.png")

    fig, ax = plt.subplots(figsize=(6, 3.2))
    both = kept_len + dropped_len
    if both:
        bins = np.linspace(0, max(both) + 1, 25)
        ax.hist(dropped_len, bins=bins, alpha=0.6, label=f"dropped ({len(dropped_len)})")
        ax.hist(kept_len, bins=bins, alpha=0.6, label=f"kept ({len(kept_len)})")
    ax.set_xlabel("text length (characters)")
    ax.set_ylabel("texts")
    ax.legend()
    ax.set_title("Text lengths: kept vs dropped")
    _save(fig, root / "lengths.png")
    plt.close(fig)
    made.append("lengths.png")

    if sim.get("matched") is not None:
        fig, ax = plt.subplots(figsize=(4.5, 3.2))
        ax.bar(
            ["real question", "random question"],
            [sim["matched"], sim["random"]],
            yerr=[sim["matched_sd"], sim["random_sd"]],
            color=["tab:green", "tab:gray"],
            capsize=4,
        )
        ax.set_ylabel("mean cosine similarity")
        ax.set_title(f"Written instruction vs question (n={sim['n']})")
        _save(fig, root / "similarity.png")
        plt.close(fig)
        made.append("similarity.png")
    return made


def write_card(root: Path, cfg, info: dict[str, dict]) -> dict:
    """Write ``card.md`` and the plots; returns the figures (also in the card)."""
    texts = _rows(root / "texts/texts.jsonl")
    pairs = _rows(root / "augment/pairs.jsonl")
    rounds = {k: _rows(root / f"round-{k}/ratings.jsonl") for k in range(1, cfg.rounds + 1)}
    last = cfg.rounds
    kept = _rows(root / f"round-{last}/kept.jsonl")
    drops = {
        "texts": _rows(root / "texts/dropped.jsonl"),
        "augment": _rows(root / "augment/dropped.jsonl"),
        **{f"round {k}": _rows(root / f"round-{k}/dropped.jsonl") for k in rounds},
    }
    kept_len = [len(ex["messages"][-1]["content"]) for ex in kept]
    dropped_len = [d["chars"] for d in drops["texts"] + drops[f"round {last}"] if d.get("chars")]

    try:
        sim = similarity(pairs, cfg.embedder, cfg.embed_device, cfg.random_seed)
    except Exception as e:  # the card says why the figure is missing; the data is unaffected
        sim = {"n": 0, "note": f"not computed: {type(e).__name__}: {e}"}
    kept_ids = {ex["meta"]["backtranslation"]["text_id"] for ex in kept}
    if sim.get("per_pair"):
        chosen = [s for i, s in zip(sim["ids"], sim["per_pair"]) if i in kept_ids]
        sim["kept_n"] = len(chosen)
        sim["kept_matched"] = round(float(np.mean(chosen)), 4) if chosen else None
    plots = _plots(root, rounds, kept_len, dropped_len, sim)

    rater = (
        "the forward model (seed-trained, then retrained each round on seed + kept pairs)"
        if cfg.rate.rater == "forward"
        else f"the judge `{cfg.rate.judge.model}` ({cfg.rate.judge.backend})"
    )
    lines = [
        "# Back-translation card",
        "",
        f"Instruction back-translation with self-curation (Li et al. 2023) from {len_seed(info)} "
        f"seed pairs and {info.get('texts', {}).get('read', len(texts))} texts; "
        f"{cfg.rounds} round(s), rated by {rater}; a pair is kept at score >= "
        f"{cfg.rate.threshold}. Output: `examples.jsonl` (seed + {len(kept)} augmented pairs), "
        "`augmented.jsonl` (the augmented pairs alone).",
        "",
        "## Steps",
        "",
        "| step | in | out | dropped | seconds |",
        "|---|---|---|---|---|",
    ]
    lines += _steps_table(info, rounds, len(texts), len(pairs))
    lines += ["## Scores", "", "| score | " + " | ".join(f"round {k}" for k in rounds) + " |"]
    lines.append("|---|" + "---|" * len(rounds))
    for s in [1, 2, 3, 4, 5, None]:
        counts = [str(sum(1 for r in rows if r["score"] == s)) for rows in rounds.values()]
        lines.append(f"| {s if s is not None else 'unparsable'} | " + " | ".join(counts) + " |")
    lines += ["", "![scores](scores.png)", "", "## Lengths", ""]
    lines.append(
        f"Kept texts: {len(kept_len)}, median {int(np.median(kept_len)) if kept_len else '-'} "
        f"characters; dropped (hygiene and round {last}): {len(dropped_len)}, median "
        f"{int(np.median(dropped_len)) if dropped_len else '-'}."
    )
    lines += ["", "![lengths](lengths.png)", "", "## Instruction quality", ""]
    if sim.get("matched") is not None:
        lines.append(
            f"On {sim['n']} texts whose real question is known, the mean cosine similarity "
            f"({cfg.embedder}) between the written instruction and the real question is "
            f"**{sim['matched']}** (sd {sim['matched_sd']}), against **{sim['random']}** (sd "
            f"{sim['random_sd']}) for a random other question of the pool"
            + (
                f"; {sim['kept_matched']} over the {sim['kept_n']} kept pairs."
                if sim.get("kept_matched") is not None
                else "."
            )
        )
        lines += ["", "![similarity](similarity.png)"]
    else:
        lines.append(f"No figure: {sim.get('note', 'no texts with a known question')}.")
    lines += ["", f"## An example of each score (round {last})", ""]
    by_id = {p["id"]: p for p in pairs}
    for s in [5, 4, 3, 2, 1, None]:
        row = next((r for r in rounds.get(last, []) if r["score"] == s), None)
        label = s if s is not None else "unparsable"
        if row is None:
            lines.append(f"- **{label}**: none")
            continue
        p = by_id.get(row["id"], {})
        reasons = row.get("reasons") or (
            "probabilities " + ", ".join(f"{k}: {v:.2f}" for k, v in row["probs"].items())
            if row.get("probs")
            else _cut((row.get("raw") or [""])[-1], 200)
        )
        lines.append(
            f"- **{label}** (`{row['id']}`): instruction: {_md(p.get('instruction', ''))!s}  \n"
            f"  text: {_md(p.get('text', ''))}  \n  rater: {_md(reasons)}"
        )
    with atomic_write(root / "card.md") as f:
        f.write("\n".join(lines) + "\n")
    return {
        "similarity": {k: v for k, v in sim.items() if k not in ("ids", "per_pair")},
        "plots": plots,
    }


def _steps_table(info: dict, rounds: dict, n_texts: int, n_pairs: int) -> list[str]:
    """The rows of the steps table, and the line saying where the drops are listed."""
    lines: list[str] = []
    t = info.get("texts", {})
    lines.append(
        f"| texts (hygiene) | {t.get('read', '')} | {t.get('kept', n_texts)} | "
        f"{_by_rule(t.get('dropped', {}))} | {t.get('seconds', '')} |"
    )
    for name in ("backward", "forward-0"):
        if name in info:
            i = info[name]
            lines.append(
                f"| {name} model | {i.get('examples', '')} pairs | trained | | {i.get('seconds', '')} |"
            )
    a = info.get("augment", {})
    lines.append(
        f"| augment | {a.get('texts', '')} | {a.get('pairs', n_pairs)} | "
        f"{_by_rule(a.get('dropped', {}))} | {a.get('seconds', '')} |"
    )
    for k in rounds:
        if k > 1 and f"forward-{k - 1}" in info:
            i = info[f"forward-{k - 1}"]
            lines.append(
                f"| forward-{k - 1} model | {i.get('examples', '')} pairs | trained | | "
                f"{i.get('seconds', '')} |"
            )
        r, kp = info.get(f"rate-{k}", {}), info.get(f"keep-{k}", {})
        lines.append(
            f"| round {k}: rate + keep | {r.get('rated', '')} | {kp.get('kept', '')} | "
            f"{_by_rule(kp.get('dropped', {}))} | {_sum(r.get('seconds'), kp.get('seconds'))} |"
        )
    lines += [
        "",
        "Every drop is listed with its rule and reason in `texts/dropped.jsonl`, "
        "`augment/dropped.jsonl` and `round-K/dropped.jsonl`.",
        "",
    ]

    return lines


def len_seed(info: dict) -> str:
    n = info.get("forward-0", info.get("backward", {})).get("examples")
    return str(n) if n is not None else "the"


def _by_rule(counts: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1])) or "-"


def _sum(*xs) -> str:
    vals = [x for x in xs if isinstance(x, (int, float))]
    return f"{sum(vals):.1f}" if vals else ""
