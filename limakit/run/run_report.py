"""The run report: data card, training curve, checkpoint choice, verdicts, checks, provenance.

Every figure is followed by the run files it was drawn from (relative links, so the report reads
the same from any copy of the run directory). Written as ``report/report.md`` and ``report.html``.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import TYPE_CHECKING

from limakit.core.files import atomic_write, read_json, read_jsonl_records
from limakit.run.config import RunConfig

if TYPE_CHECKING:
    from limakit.evaluation.summaries import ChecksFile


def _demote(md: str, levels: int = 1) -> str:
    return re.sub(r"(?m)^(#{1,5}) ", lambda m: "#" * (len(m.group(1)) + levels) + " ", md)


def _relink(md: str, prefix: str) -> str:
    """Point relative image and file links of an embedded document at its own folder."""
    return re.sub(r"\]\((?!https?:|/|#)([^)]+)\)", lambda m: f"]({prefix}{m.group(1)})", md)


def epoch_losses(rows: list[dict]) -> list[dict]:
    """Per epoch of a training log (``metrics.jsonl`` rows): its steps and its mean loss.

    A step's ``epoch`` is fractional (epoch 1 ends at 1.0), so a row belongs to epoch
    ceil(epoch). The mean is per trained token (each step's loss weighted by its target tokens),
    i.e. the loss of the epoch as a whole; a row without token counts weighs 1. ``partial``: the
    log stops before the epoch's end (a capped or interrupted run).

    >>> rows = [{"epoch": 0.5, "loss": 4.0}, {"epoch": 1.0, "loss": 3.0}]
    >>> rows.append({"epoch": 1.5, "loss": 2.0})
    >>> [(e["epoch"], e["steps"], e["loss"], e["partial"]) for e in epoch_losses(rows)]
    [(1, 2, 3.5, False), (2, 1, 2.0, True)]
    """
    by_epoch: dict[int, list[dict]] = {}
    for r in rows:
        by_epoch.setdefault(max(1, math.ceil(float(r["epoch"]) - 1e-9)), []).append(r)
    out = []
    for epoch in sorted(by_epoch):
        group = by_epoch[epoch]
        weights = [float(r.get("target_tokens") or 1) for r in group]
        loss = sum(w * float(r["loss"]) for w, r in zip(weights, group)) / sum(weights)
        last = max(float(r["epoch"]) for r in group)
        start, end = min(r.get("step", 0) for r in group), max(r.get("step", 0) for r in group)
        out.append({"epoch": epoch, "steps": len(group), "first_step": start, "last_step": end,
                    "loss": loss, "partial": last < epoch - 1e-6})  # fmt: skip
    return out


def epoch_loss_text(rows: list[dict]) -> str:
    """``loss per epoch 4.04 -> 3.19 -> 3.37``: the epoch means, not the first and last step,
    whose losses swing with the examples each step happens to draw."""
    epochs = epoch_losses(rows)
    means = " -> ".join(f"{e['loss']:.2f}" + (" (partial)" if e["partial"] else "") for e in epochs)
    word = "epoch" if len(epochs) == 1 else "epochs"
    return f"{len(epochs)} {word}, mean loss per epoch {means}"


def loss_png(metrics: Path, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    rows = [row for _, row in read_jsonl_records(metrics, resumable=True)]
    fig, ax = plt.subplots(figsize=(7, 3.2))
    ax.plot([r["step"] for r in rows], [r["loss"] for r in rows], marker="o", ms=3, label="step")
    for i, e in enumerate(epoch_losses(rows)):
        ax.hlines(e["loss"], e["first_step"] - 0.5, e["last_step"] + 0.5, colors="C1",
                  label="epoch mean" if i == 0 else None)  # fmt: skip
    ax.legend(fontsize=8)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss (per trained token)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_write(out, "wb") as f:
        fig.savefig(f, format="png", dpi=110, metadata={"Software": None})
    plt.close(fig)


def _epoch_table(metrics: Path) -> list[str]:
    rows = [row for _, row in read_jsonl_records(metrics, resumable=True)]
    lines = ["| epoch | steps | mean loss (per trained token) |", "|---:|---:|---:|"]
    for e in epoch_losses(rows):
        part = " (partial)" if e["partial"] else ""
        lines.append(f"| {e['epoch']}{part} | {e['steps']} | {e['loss']:.3f} |")
    note = "Single steps swing with the examples they draw; compare the epoch means."
    return [*lines, "", note, ""]


def _shown(path: Path) -> str:
    """A prompts file as the config would name it: ``packaged:NAME`` for a shipped file."""
    from limakit.run.config import PACKAGED, packaged_path

    try:
        return PACKAGED + path.resolve().relative_to(packaged_path(".").resolve()).as_posix()
    except ValueError:
        return str(path)


def format_lines(root: Path) -> list[str]:
    """In which chat format each model was sampled (``meta.template`` of its answers): a model
    with its own chat template answers in it, as the paper compared each system in its own."""
    from limakit.core.files import read_jsonl_records

    said = []
    for path in sorted((root / "answers").glob("*.jsonl")):
        first = next((row for _, row in read_jsonl_records(path, resumable=True)), None)
        template = ((first or {}).get("meta") or {}).get("template")
        if template == "own":
            said.append(f"`{path.stem}` in its own chat format (its chat template, stopping at "
                        "its own end-of-turn token)")  # fmt: skip
        elif template == "limakit":
            said.append(f"`{path.stem}` in limakit's format (ending at `<|eot|>`)")
    return ["Sampled: " + "; ".join(said) + ".", ""] if said else []


def prompt_lines(cfg: RunConfig, root: Path) -> list[str]:
    """Which prompts the model and the baselines answered: the curated test split or a file."""
    from limakit.records.example import read_examples
    from limakit.run.config import prompts_path

    path = prompts_path(cfg, root)
    if not path.exists():
        return []
    total = sum(1 for _ in read_examples(path, require_answer=None))
    used = min(total, cfg.sample.limit) if cfg.sample.limit else total
    of = f"the first {used} of its {total}" if used < total else f"all {total}"
    if cfg.sample.prompts == "curated":
        return [f"Test prompts: {used} from the curated split "
                f"[data/test.jsonl](../data/test.jsonl) ({of}).", ""]  # fmt: skip
    return [
        f"Test prompts: {used} from `{_shown(path)}` (`sample.prompts`; {of}), not from the "
        "curated split: the card's test count is that of data/test.jsonl, which this run does "
        "not sample.",
        "",
    ]


def _checks_lines(checks: ChecksFile) -> list[str]:
    """Every judge-free measure per system with its 95% interval, then answer lengths."""
    from limakit.evaluation.checks import measures_table

    words = ", ".join(f"{name} {c['length_words']['mean'] or 0:.0f}" for name, c in checks.items())
    return [*measures_table(checks), "", f"Mean answer length in words: {words}."]


def subset_lines(cfg: RunConfig, root: Path) -> list[str]:
    """The judge-free measures of each prompt subset (``sample.subsets``), e.g. safety."""
    from limakit.evaluation.checks import measures_table
    from limakit.evaluation.summaries import load_checks

    lines: list[str] = []
    for k, path in cfg.sample.subsets.items():
        checks = root / "judge" / f"checks-{k}.json"
        if checks.exists():
            lines += [f"### Prompt subset `{k}`", "", f"Prompts: `{_shown(Path(path))}`.", ""]
            lines += [*measures_table(load_checks(checks)), ""]
            lines += [f"From [judge/checks-{k}.json](../judge/checks-{k}.json).", ""]
    return lines


def cap_lines(cfg: RunConfig, root: Path) -> list[str]:
    """The sampling caps against the longest trained answer (the run refused a shorter cap
    unless ``allow_short_cap`` was set, which is said here)."""
    from limakit.run.caps import LENGTHS, cap_check

    if not (root / LENGTHS).exists():  # measured when training started
        return []
    c = cap_check(cfg, root)
    caps = ", ".join(f"`{k}` {v}" for k, v in c["caps"].items())
    line = (f"Sampling caps: {caps} new tokens; the longest trained answer has "
            f"{c['longest_answer_tokens']} tokens (its end of turn included).")  # fmt: skip
    if c["short"]:
        line += (" **`allow_short_cap: true`**: a cap is below it, so some answers may be cut "
                 "before their end of turn and `ends_turn` understates the model.")  # fmt: skip
    return [line, ""]


def side_by_side_lines(root: Path, names: list[str], k: int = 2, chars: int = 700) -> list[str]:
    """The first ``k`` test prompts with every system's answer (cut at ``chars`` characters)."""
    from limakit.evaluation.answers import read_answers

    paths = {n: root / "answers" / f"{n}.jsonl" for n in names}
    if len(names) < 2 or not all(p.exists() for p in paths.values()):
        return []
    answers = {n: read_answers(p) for n, p in paths.items()}
    first = answers[names[0]]
    keys = [key for key in first if all(key in a for a in answers.values())][:k]
    if not keys:
        return []
    lines = ["## Answers side by side", ""]
    for key in keys:
        prompt = first[key].messages[-2].content if len(first[key].messages) > 1 else ""
        lines += [f"**Prompt** `{first[key].id}`:", "", _quote(prompt, chars), ""]
        for n in names:
            ex = answers[n][key]
            stop = ex.meta.get("stop", "?")
            lines += [f"*{n}* (stop: {stop}, {ex.meta.get('new_tokens', '?')} tokens):", ""]
            lines += [_quote(ex.answer or "", chars), ""]
    return lines


def shift_report_lines(root: Path) -> list[str]:
    """The shift stage's figures (``shift/shift.json``), when the run measured them."""
    from limakit.evaluation.shift_page import shift_lines

    path = root / "shift" / "shift.json"
    if not path.exists():
        return []
    lines = ["## What the fine-tuning changed, token by token", ""]
    lines += shift_lines(read_json(path), "../shift/")
    return [*lines, "From [shift/shift.json](../shift/shift.json).", ""]


def _quote(text: str, chars: int) -> str:
    cut = text if len(text) <= chars else text[:chars].rstrip() + " [...]"
    return "\n".join("> " + line if line.strip() else ">" for line in cut.splitlines() or [""])


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
    lines += prompt_lines(cfg, root)
    lines += format_lines(root)
    if card.exists():
        rel = card.parent.relative_to(root).as_posix()
        lines += [f"Data card ([{rel}/card.md](../{rel}/card.md)):", ""]
        lines += [_relink(_demote(card.read_text(encoding="utf-8"), 2), f"../{rel}/"), ""]

    lines += ["## Training", ""]
    loss_png(root / "train" / "metrics.jsonl", out / "train_loss.png")
    lines += ["![training loss](train_loss.png)", "",
              "Figure: training loss per step and its mean per epoch, from "
              "[train/metrics.jsonl](../train/metrics.jsonl) "
              "(config: [train/train_config.yaml](../train/train_config.yaml)).", ""]  # fmt: skip
    lines += _epoch_table(root / "train" / "metrics.jsonl")

    lines += cap_lines(cfg, root)
    choice = read_json(root / "select" / "choice.json")
    lines += ["## Checkpoint choice", "", f"**{choice['checkpoint']}**: {choice['how']}.", ""]
    sel_md = root / "select" / "selection.md"
    if sel_md.exists():  # the table per epoch and the rule that decided, with its reason
        table = sel_md.read_text(encoding="utf-8").split("\n", 1)[1].strip()
        lines += [table, "", "From [select/selection.json](../select/selection.json).", ""]
    elif choice.get("why"):
        lines += [f"Why: {choice['why']}.", ""]

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
        from limakit.evaluation.summaries import load_checks

        lines += _checks_lines(load_checks(checks))
        lines += ["", "From [judge/checks.json](../judge/checks.json).", ""]
    lines += subset_lines(cfg, root)
    lines += shift_report_lines(root)
    lines += side_by_side_lines(root, ["model", *(b.name for b in cfg.baselines)])

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
