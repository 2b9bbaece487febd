"""The card's Splits section says what dev.jsonl and test.jsonl really hold."""

from __future__ import annotations

from limakit.core.files import write_jsonl
from limakit.curation import CurateConfig, curate


def _manual(path, answered: int, prompt_only: int) -> None:
    rows = [
        {"id": f"m{i}", "source": "manual", "messages": [
            {"role": "user", "content": f"Question {i}?"},
            {"role": "assistant", "content": f"Answer {i}, in plain words."}]}
        for i in range(answered)
    ] + [
        {"id": f"t{i}", "source": "manual", "messages": [
            {"role": "user", "content": f"Test prompt {i}?"}]}
        for i in range(prompt_only)
    ]  # fmt: skip
    write_jsonl(path, rows)


def _card(tmp_path, prompt_only: int) -> str:
    src = tmp_path / "manual.jsonl"
    _manual(src, 5, prompt_only)
    cfg = CurateConfig(manual=[str(src)], n=3, dev=2, splits=True, out=str(tmp_path / "o"),
                       progress=False)  # fmt: skip
    summary = curate(cfg)
    assert summary.test == prompt_only
    return (tmp_path / "o" / "card.md").read_text()


def test_no_prompt_only_record_means_an_empty_test_split_said_so(tmp_path):
    card = _card(tmp_path, 0)
    assert "test: 0 prompts" not in card
    assert "dev.jsonl: 2 hand-written examples held out" in card
    assert "test.jsonl: empty; no input held a prompt-only record" in card


def test_prompt_only_records_are_the_test_split(tmp_path):
    card = _card(tmp_path, 3)
    assert "test.jsonl: 3 prompts, the prompt-only records of the inputs" in card
