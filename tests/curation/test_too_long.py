"""Curation that knows the training length: the too_long rule, and the run's sampling-cap check."""

from __future__ import annotations

import json

import pytest
import yaml

from limakit.core.errors import LimaError
from limakit.core.files import write_jsonl
from limakit.curation import curate
from limakit.curation.config import CurateConfig
from limakit.curation.length import TokenLengths
from limakit.records.example import read_examples
from limakit.records.template import render
from limakit.run import execute, load_run_config
from tests.runkit import tiny_config

WORDS = "the river carries fine silt down to the delta where it settles slowly".split()


def _text(n_words: int) -> str:
    return " ".join(WORDS[i % len(WORDS)] for i in range(n_words)) + "."


def _pool(path, sizes):
    rows = [
        {
            "id": f"p{i}",
            "source": "pool",
            "messages": [
                {"role": "user", "content": f"Question {i}: how do deltas form?"},
                {"role": "assistant", "content": f"Answer {i}. " + _text(n)},
            ],
        }  # fmt: skip
        for i, n in enumerate(sizes)
    ]
    write_jsonl(path, rows)


def _lengths_model(name: str):
    """The tokenizer and template training loads for ``name``, as curation reads them."""
    from limakit.models import load_model_for

    return load_model_for(name, "cpu", "float32", weights=False)


def test_an_example_over_max_len_is_rejected_by_its_own_rule(tmp_path, smollm2_dir):
    _pool(tmp_path / "pool.jsonl", [20, 30, 200, 400, 25])
    cfg = CurateConfig(pool=[str(tmp_path / "pool.jsonl")], n=5, out=str(tmp_path / "out"),
                       max_len=96, tokenizer=smollm2_dir, progress=False,
                       rules={"min_answer_chars": 10, "max_answer_chars": 100000},
                       dedup={"near": False, "exact": False})  # fmt: skip
    summary = curate(cfg)
    rejected = [json.loads(line) for line in (tmp_path / "out" / "rejected.jsonl").open()]
    assert sorted(r["id"] for r in rejected if r["rule"] == "too_long") == ["p2", "p3"]
    assert "exceeds max_len=96 tokens" in rejected[0]["reason"]
    assert summary.rejected_by_rule["too_long"] == 2 and summary.examples == 3
    assert "too_long" in (tmp_path / "out" / "card.md").read_text()
    lengths = TokenLengths(_lengths_model(smollm2_dir), 96)
    for ex in read_examples(tmp_path / "out" / "examples.jsonl"):
        r = render(ex, lengths.tokenizer, lengths.template, max_len=96)
        assert not r.trimmed and len(r.input_ids) <= 96
    # The boundary is exact: the same example fits a max_len of its own rendered length.
    ex = next(iter(read_examples(tmp_path / "out" / "examples.jsonl")))
    size = len(render(ex, lengths.tokenizer, lengths.template, max_len=4096).input_ids)
    assert TokenLengths(_lengths_model(smollm2_dir), size).too_long(ex) is None
    assert TokenLengths(_lengths_model(smollm2_dir), size - 1).too_long(ex) is not None


def test_max_len_needs_a_tokenizer():
    with pytest.raises(ValueError, match="max_len needs `tokenizer`"):
        CurateConfig(pool=["x.jsonl"], n=1, max_len=64)


def test_the_longest_trained_answer_counts_its_eot(smollm2_dir, smollm2_tokenizer):
    from limakit.records.example import Example, Message

    ex = Example([Message("user", "q"), Message("assistant", "Hello there, friend.")], "t", "a")
    n = len(smollm2_tokenizer("Hello there, friend.", add_special_tokens=False).input_ids)
    assert TokenLengths(_lengths_model(smollm2_dir)).longest_answer([ex]) == (n + 1, "a")


def test_a_run_whose_cap_is_below_the_longest_trained_answer_refuses_to_train(
    tmp_path, tiny_model_dir
):
    path = tiny_config(tmp_path, tiny_model_dir, "http://127.0.0.1:9/v1")
    data = yaml.safe_load(path.read_text())
    data["allow_short_cap"] = False
    path.write_text(yaml.safe_dump(data))
    cfg = load_run_config(path)
    assert cfg.data.curate.max_len == 128 and cfg.data.curate.tokenizer == tiny_model_dir
    with pytest.raises(LimaError) as e:
        execute(cfg, tmp_path / "run")
    msg = str(e.value)
    assert (
        "sample.decode.max_new_tokens=8, select.max_new_tokens=6 below the longest trained " in msg
    )
    assert "allow_short_cap: true" in msg
    assert not (tmp_path / "run" / "train" / "checkpoints").exists()  # refused before training


def test_dev_and_test_held_out_from_any_source_with_their_answers(tmp_path):
    _pool(tmp_path / "pool.jsonl", [20 + i for i in range(12)])
    cfg = CurateConfig(pool=[str(tmp_path / "pool.jsonl")], n=100, out=str(tmp_path / "out"),
                       splits=True, dev=2, dev_from="any", test=3, progress=False,
                       rules={"min_answer_chars": 10, "max_answer_chars": 100000},
                       dedup={"near": False, "exact": False})  # fmt: skip
    summary = curate(cfg)
    out = tmp_path / "out"
    dev = list(read_examples(out / "dev.jsonl"))
    test = list(read_examples(out / "test.jsonl"))
    train = list(read_examples(out / "examples.jsonl"))
    assert (len(dev), len(test), len(train)) == (2, 3, 7)
    assert all(ex.messages[-1].role == "assistant" for ex in test)  # references kept
    assert not {e.id for e in train} & {e.id for e in dev + test}
    assert not {e.id for e in dev} & {e.id for e in test}
    assert (summary.test, summary.held_out_test, summary.prompt_only) == (3, 3, 0)
    card = (out / "card.md").read_text()
    assert "dev.jsonl: 2 curated examples held out from training." in card
    assert "test.jsonl: 3 prompts: 3 curated examples held out from training with their" in card
