"""The run report: data card, training curve, checkpoint choice, verdicts, checks, provenance.

Every figure is followed by the run files it was drawn from (relative links, so the report reads
the same from any copy of the run directory). Written as ``report/report.md`` and ``report.html``.
"""

from __future__ import annotations

import re
from pathlib import Path

from limakit.files import atomic_write, read_json, read_jsonl_records
from limakit.run.config import RunConfig


def _demote(md: str, levels: int = 1) -> str:
    return re.sub(r"(?m)^(#{1,5}) ", lambda m: "#" * (len(m.group(1)) + levels) + " ", md)


def _relink(md: str, prefix: str) -> str:
    """Point relative image and file links of an embedded document at its own folder."""
    return re.sub(r"\]\((?!https?:|/|#)([^)]+)\)", lambda m: f"]({prefix}{m.group(1)})", md)


def loss_png(metrics: Path, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    rows = [row for _, row in read_jsonl_records(metrics, resumable=True)]
    fig, ax = plt.subplots(figsize=(7, 3.2))
    ax.plot([r["step"] for r in rows], [r["loss"] for r in rows], marker="o", ms=3)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss (per trained token)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_write(out, "wb") as f:
        fig.savefig(f, format="png", dpi=110, metadata={"Software": None})
    plt.close(fig)


def _checks_table(checks: dict) -> list[str]:
    lines = ["| answers | stopped at EOT | mean words | repetition |", "|---|---:|---:|---:|"]
    for name, c in checks.items():
        words = c["length_words"]["mean"]
        lines.append(f"| {name} | {c['eot_share']:.0%} | {0 if words is None else words:.0f} | "
                     f"{c['repetition']:.3f} |")  # fmt: skip
    return lines


def provenance_lines(root: Path) -> list[str]:
    path = root / "run.json"
    if not path.exists():
        return []
    info = read_json(path)
    versions = ", ".join(f"{k} {v}" for k, v in info.get("versions", {}).items())
    return [
        "## Provenance",
        "",
        "- resolved config: [config.yaml](../config.yaml); details: [run.json](../run.json)",
        f"- limakit commit: {info.get('commit') or 'not a git checkout'}",
        f"- packages: {versions}",
        "",
    ]


def write_run_report(cfg: RunConfig, root: Path) -> Path:
    from limakit.evaluation import write_report

    out = root / "report"
    lines = [f"# Run report: {cfg.name}", ""]
    lines += ["Stage by stage; every figure names the run files it was drawn from.", ""]

    card = root / "data" / "card.md"
    if not card.exists() and (root / "data" / "pool" / "card.md").exists():
        card = root / "data" / "pool" / "card.md"
    n = sum(1 for x in (root / "data" / "examples.jsonl").read_text().splitlines() if x.strip())
    lines += [
        "## Data",
        "",
        f"{n} training examples: [data/examples.jsonl](../data/examples.jsonl).",
    ]
    pf = root / "data" / "prompt_filter.json"
    if pf.exists():
        f = read_json(pf)
        lines += ["", f"Prompts filtered by `{f['regex']}`: {f['matched']} of {f['pool']} curated "
                      f"examples matched, {f['kept']} kept."]  # fmt: skip
    lines.append("")
    if card.exists():
        rel = card.parent.relative_to(root).as_posix()
        lines += [f"Data card ([{rel}/card.md](../{rel}/card.md)):", ""]
        lines += [_relink(_demote(card.read_text(encoding="utf-8"), 2), f"../{rel}/"), ""]

    lines += ["## Training", ""]
    loss_png(root / "train" / "metrics.jsonl", out / "train_loss.png")
    lines += ["![training loss](train_loss.png)", "",
              "Figure: training loss per step, from [train/metrics.jsonl](../train/metrics.jsonl) "
              "(config: [train/train_config.yaml](../train/train_config.yaml)).", ""]  # fmt: skip

    choice = read_json(root / "select" / "choice.json")
    lines += ["## Checkpoint choice", "", f"**{choice['checkpoint']}**: {choice['how']}.", ""]
    sel_md = root / "select" / "selection.md"
    if sel_md.exists():
        table = sel_md.read_text(encoding="utf-8").split("\n", 1)[1].strip()
        lines += [table, "", "From [select/selection.json](../select/selection.json).", ""]

    judged = sorted(d for d in (root / "judge").iterdir() if (d / "summary.json").exists())
    if judged:
        write_report(judged, out / "evaluation")
        ev = (out / "evaluation" / "report.md").read_text(encoding="utf-8")
        ev = ev.split("\n", 1)[1].replace(str(root / "judge"), "judge").replace(str(root), ".")
        ev = re.sub(r"!\[([^\]]*)\]\(([^)]+)\)", r"![\1](evaluation/\2)", ev)
        srcs = ", ".join(f"[judge/{d.name}/](../judge/{d.name}/summary.json)" for d in judged)
        lines += ["## Judgements", "", _demote(ev.strip(), 1), ""]
        if "](evaluation/" in ev:
            lines += [f"Figures: from the `summary.json` (and `verdicts.jsonl`) of {srcs}.", ""]

    checks = root / "judge" / "checks.json"
    if checks.exists():
        lines += ["## Automatic checks (no judge)", ""]
        lines += _checks_table(read_json(checks))
        lines += ["", "From [judge/checks.json](../judge/checks.json).", ""]

    if cfg.notes:
        lines += ["## Departures from the paper", ""] + [f"- {x}" for x in cfg.notes] + [""]
    lines += provenance_lines(root)
    text = "\n".join(lines).rstrip() + "\n"
    with atomic_write(out / "report.md") as f:
        f.write(text)
    with atomic_write(out / "report.html") as f:
        f.write(to_html(text, f"Run report: {cfg.name}"))
    return out / "report.md"


def to_html(markdown: str, title: str) -> str:
    import html

    from markdown_it import MarkdownIt

    body = MarkdownIt("commonmark").enable("table").render(markdown)
    style = (
        "body{font-family:sans-serif;max-width:1000px;margin:2em auto}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px}"
        "th{background:#f4f4f4}img{max-width:100%}"
    )
    return (
        f'<!doctype html>\n<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{style}</style></head><body>\n{body}</body></html>\n"
    )
