"""Small answer files for the evaluation tests."""

from __future__ import annotations

from pathlib import Path

from limakit.core.files import write_jsonl


def answer(i: int, text: str, model: str, sample: int | None = 0, **meta) -> dict:
    m = {"model": model, "stop": "eot", **meta}
    if sample is not None:
        m["sample"] = sample
    return {
        "id": f"p{i}",
        "source": "cat-even" if i % 2 == 0 else "cat-odd",
        "messages": [
            {"role": "user", "content": f"Question {i}: how do I do thing {i}?"},
            {"role": "assistant", "content": text},
        ],
        "meta": m,
    }


def write_pair(d: Path, a_texts: list[str], b_texts: list[str]) -> tuple[Path, Path]:
    a, b = d / "a.jsonl", d / "b.jsonl"
    write_jsonl(a, [answer(i, t, "model-a") for i, t in enumerate(a_texts)])
    write_jsonl(b, [answer(i, t, "model-b") for i, t in enumerate(b_texts)])
    return a, b
