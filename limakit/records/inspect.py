"""Show what the model will be trained on: tokens, with the trained ones highlighted.

``lima inspect --model M --data FILE`` is how users (and the tests) check label masks and, with a
prompt loss weight, each token's weight: a run of tokens weighing other than 1 is shown with its
weight (``⟦w=0.1 ...⟧`` without colours).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TextIO

from limakit.core.console import console_on
from limakit.core.files import append_jsonl
from limakit.records.example import Example
from limakit.records.template import IGNORE, Rendered, Template, TrainOn, render


@dataclass
class InspectTotals:
    examples: int = 0
    tokens: int = 0
    trained: int = 0
    weight: float = 0.0  # the summed loss weight of the trained tokens
    trimmed: int = 0
    untrained: int = 0  # examples left with no trained token (e.g. trimmed before the answer)


def inspect_examples(  # noqa: PLR0913 - one keyword per option of `lima inspect`
    examples: Iterable[Example],
    tokenizer,
    *,
    max_len: int = 2048,
    train_on: TrainOn = "assistant",
    prompt_weight: float = 0.0,
    drop_prompts: bool = False,
    as_json: bool = False,
    limit: int | None = None,
    out: TextIO,
    template: Template | None = None,
) -> InspectTotals:
    """Render each example onto ``out`` (the command's result: ``lima inspect`` gives stdout) as
    JSON lines (``as_json``) or a highlighted view; return the totals."""
    from rich.table import Table

    console = console_on(out)
    template = template or Template()  # the loaded model's, when given
    totals = InspectTotals()
    rows = []
    for i, ex in enumerate(examples):
        if limit is not None and i >= limit:
            break
        r = render(ex, tokenizer, template, max_len=max_len, train_on=train_on,
                   prompt_weight=prompt_weight, drop_prompts=drop_prompts)  # fmt: skip
        weight = sum(r.weights)
        totals.examples += 1
        totals.tokens += len(r.input_ids)
        totals.trained += r.n_trained
        totals.weight += weight
        totals.trimmed += int(r.trimmed)
        totals.untrained += int(r.n_trained == 0)
        if as_json:
            record = {
                "id": ex.id,
                "input_ids": r.input_ids,
                "labels": r.labels,
                "weights": r.weights,
                "tokens": len(r.input_ids),
                "trained": r.n_trained,
                "weight": round(weight, 6),
                "trimmed": r.trimmed,
            }
            append_jsonl(out, record, flush=False)
            continue
        console.rule(f"[bold]{ex.id}[/bold]  ({ex.source})")
        console.print(_shown(r, tokenizer, plain=not console.is_terminal))
        rows.append(
            (ex.id, len(r.input_ids), r.n_trained, f"{weight:g}", "yes" if r.trimmed else "")
        )
    if not as_json:
        table = Table(title="tokens per example (trained: green, or ⟦bracketed⟧ without colours)")
        for col in ("id", "tokens", "trained", "loss weight", "trimmed"):
            table.add_column(col, justify="right" if col != "id" else "left")
        for row in rows:
            table.add_row(*(str(x) for x in row))
        table.add_row("[bold]total[/bold]", str(totals.tokens), str(totals.trained),
                      f"{totals.weight:g}", str(totals.trimmed))  # fmt: skip
        console.print(table)
        if totals.untrained:
            console.print(f"[yellow]{totals.untrained} example(s) have no trained token[/yellow]")
    return totals


def _shown(r: Rendered, tokenizer, *, plain: bool):
    """The tokens, trained ones green (weighted ones yellow, with their weight); without colours
    (a pipe, a file), each run of one weight is bracketed ``⟦...⟧``, ``⟦w=0.1 ...⟧`` below 1."""
    from rich.text import Text

    text = Text()
    current = 0.0
    for tid, label, w in zip(r.input_ids, r.labels, r.weights):
        w = w if label != IGNORE else 0.0
        if w != current:
            if plain and current:
                text.append("⟧")
            if plain and w:
                text.append("⟦" if w == 1.0 else f"⟦w={w:g} ")
            elif w and w != 1.0:
                text.append(f"w={w:g} ", style="italic yellow")
            current = w
        style = "dim" if not w else "bold green on grey15" if w == 1.0 else "yellow on grey15"
        text.append(tokenizer.decode([tid]), style=style)
    if plain and current:
        text.append("⟧")
    return text
