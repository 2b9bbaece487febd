"""Show what the model will be trained on: tokens, with the trained ones highlighted.

``lima inspect --model M --data FILE`` is how users (and the tests) check label masks.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass

from limakit.core.files import append_jsonl
from limakit.records.example import Example
from limakit.records.template import IGNORE, Template, TrainOn, render


@dataclass
class InspectTotals:
    examples: int = 0
    tokens: int = 0
    trained: int = 0
    trimmed: int = 0
    untrained: int = 0  # examples left with no trained token (e.g. trimmed before the answer)


def inspect_examples(
    examples: Iterable[Example],
    tokenizer,
    *,
    max_len: int = 2048,
    train_on: TrainOn = "assistant",
    as_json: bool = False,
    limit: int | None = None,
    out=None,
    template: Template | None = None,
) -> InspectTotals:
    """Render each example; print JSON lines (``as_json``) or a highlighted view, return totals."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    out = out or sys.stdout
    console = Console(file=out, highlight=False, soft_wrap=True)
    template = template or Template.from_tokenizer(tokenizer)  # the loader's, when given
    totals = InspectTotals()
    rows = []
    for i, ex in enumerate(examples):
        if limit is not None and i >= limit:
            break
        r = render(ex, tokenizer, template, max_len=max_len, train_on=train_on)
        totals.examples += 1
        totals.tokens += len(r.input_ids)
        totals.trained += r.n_trained
        totals.trimmed += int(r.trimmed)
        totals.untrained += int(r.n_trained == 0)
        if as_json:
            row = {
                "id": ex.id,
                "input_ids": r.input_ids,
                "labels": r.labels,
                "tokens": len(r.input_ids),
                "trained": r.n_trained,
                "trimmed": r.trimmed,
            }
            append_jsonl(out, row, flush=False)
            continue
        text = Text()
        # Without colours (a pipe, a file), trained runs are bracketed with ⟦...⟧ instead.
        plain = not console.is_terminal
        inside = False
        for tid, label in zip(r.input_ids, r.labels):
            trained = label != IGNORE
            if plain and trained != inside:
                text.append("⟦" if trained else "⟧")
                inside = trained
            text.append(tokenizer.decode([tid]), style="bold green on grey15" if trained else "dim")
        if plain and inside:
            text.append("⟧")
        console.rule(f"[bold]{ex.id}[/bold]  ({ex.source})")
        console.print(text)
        rows.append((ex.id, len(r.input_ids), r.n_trained, "yes" if r.trimmed else ""))
    if not as_json:
        table = Table(title="tokens per example (trained: green, or ⟦bracketed⟧ without colours)")
        for col in ("id", "tokens", "trained", "trimmed"):
            table.add_column(col, justify="right" if col != "id" else "left")
        for row in rows:
            table.add_row(*(str(x) for x in row))
        table.add_row(
            "[bold]total[/bold]", str(totals.tokens), str(totals.trained), str(totals.trimmed)
        )
        console.print(table)
        if totals.untrained:
            console.print(f"[yellow]{totals.untrained} example(s) have no trained token[/yellow]")
    return totals
