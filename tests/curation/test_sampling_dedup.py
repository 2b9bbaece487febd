"""Temperature sampling proportions, category sampling, quotas, dedup and decontamination."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from limakit.core.errors import LimaError
from limakit.curation.dedup import Decontaminator, deduplicate
from limakit.curation.sampling import (
    allocate,
    category_sample,
    temperature_sample,
    temperature_weights,
)
from limakit.records.example import Example, Message

FIX = Path(__file__).parent.parent / "fixtures"


def test_temperature_weights_follow_size_to_one_over_tau():
    w = temperature_weights({"a": 1000, "b": 125, "c": 8}, tau=3.0)
    # 1000^(1/3) : 125^(1/3) : 8^(1/3) = 10 : 5 : 2
    assert w == pytest.approx({"a": 10 / 17, "b": 5 / 17, "c": 2 / 17})
    assert temperature_weights({"a": 1000, "b": 10}, tau=1.0)["a"] == pytest.approx(1000 / 1010)


@pytest.mark.parametrize("tau", [1.0, 3.0])
def test_sampled_proportions_match_tau(tau):
    sizes = {"big": 1000, "mid": 125, "small": 8}
    groups = {g: [f"{g}{i}" for i in range(5000)] for g in sizes}
    k = 3000
    picked = temperature_sample(groups, sizes, k, tau=tau, rng=random.Random(7))
    expect = temperature_weights(sizes, tau)
    for g in sizes:
        share = sum(1 for p in picked if p.startswith(g)) / k
        # Binomial standard deviation at k=3000 is below 0.01; allow 4 of them.
        assert share == pytest.approx(expect[g], abs=0.04)


def test_temperature_sample_takes_best_first_and_exhausts_groups():
    groups = {"a": [3, 2, 1], "b": [30, 20]}
    picked = temperature_sample(groups, {"a": 1, "b": 1}, 10, tau=3, rng=random.Random(0))
    assert sorted(picked) == [1, 2, 3, 20, 30]
    assert [x for x in picked if x < 10] == [3, 2, 1] and [x for x in picked if x >= 10] == [30, 20]


def test_sampling_is_reproducible_under_a_seed():
    groups = {g: list(range(100)) for g in "abcde"}
    sizes = {g: 10**i for i, g in enumerate("abcde")}
    one = temperature_sample(groups, sizes, 50, rng=random.Random(3))
    two = temperature_sample(groups, sizes, 50, rng=random.Random(3))
    assert one == two != temperature_sample(groups, sizes, 50, rng=random.Random(4))


def test_category_first_then_article():
    # One huge category must not crowd out the small ones: categories are drawn uniformly.
    groups = {"big": [f"big{i}" for i in range(1000)], "s1": ["s1-a", "s1-b"], "s2": ["s2-a"]}
    picked = category_sample(groups, 30, rng=random.Random(0))
    assert {"s1-a", "s1-b", "s2-a"} <= set(picked)
    assert len(set(picked)) == 30


def test_allocate_scales_quotas_and_passes_on_shortfalls():
    q = {"stem": 200, "other": 200, "wikihow": 200, "manual": 200}
    assert allocate(100, q, {"stem": 99, "other": 99, "wikihow": 99, "manual": 99}) == {
        "stem": 25,
        "other": 25,
        "wikihow": 25,
        "manual": 25,
    }
    got = allocate(100, q, {"stem": 99, "other": 99, "wikihow": 5, "manual": 0})
    assert got["wikihow"] == 5 and got["manual"] == 0 and sum(got.values()) == 100
    assert allocate(100, q, {"stem": 3, "other": 4, "wikihow": 0, "manual": 0}) == {
        "stem": 3,
        "other": 4,
        "wikihow": 0,
        "manual": 0,
    }


def mk(prompt: str, answer: str, i: str) -> Example:
    return Example([Message("user", prompt), Message("assistant", answer)], id=i)


LONG = " ".join(f"word{i}" for i in range(200))


def test_exact_and_near_duplicates_keep_the_first():
    a = mk("How do I poach an egg?", LONG, "a")
    b = mk("how do i  POACH an egg", "Different answer entirely.", "b")  # same normalised prompt
    c = mk("Poaching eggs, a question", LONG.replace("word7 ", "wordseven "), "c")  # near copy of a
    d = mk("Something else", "Unrelated text " * 30, "d")
    kept, removed = deduplicate([a, b, c, d])
    assert [e.id for e in kept] == ["a", "d"]
    assert {(e.id, rule) for e, rule, _ in removed} == {("b", "duplicate"), ("c", "near_duplicate")}
    assert "same prompt as a" in dict((e.id, r) for e, _, r in removed)["b"]
    kept, _ = deduplicate([a, b, c, d], near=False)
    assert [e.id for e in kept] == ["a", "c", "d"]


def test_decontamination_ngram_overlap():
    decon = Decontaminator([FIX / "eval" / "question.jsonl"], n=8)
    hit = mk(
        "Please compose an engaging travel blog post about a recent trip to Hawaii, with photos",
        "ok",
        "x",
    )
    short = mk("Question: why is my bread dough so tough? Thanks.", "ok", "y")
    clean = mk("How do I grow tomatoes?", "In pots.", "z")
    kept, removed = decon.split([hit, short, clean])
    assert [e.id for e in kept] == ["z"]
    reasons = {e.id: r for e, _, r in removed}
    assert reasons["x"].startswith("8-gram overlap with question.jsonl:1")
    assert "question.jsonl:2" in reasons["y"]
    assert Decontaminator([FIX / "eval" / "question.jsonl"], n=30).split([hit])[1] == []


def test_decontamination_set_errors(tmp_path):
    with pytest.raises(LimaError, match="not found"):
        Decontaminator([tmp_path / "none.jsonl"])
    p = tmp_path / "e.jsonl"
    p.write_text('{"id": 1}\n')
    with pytest.raises(LimaError, match=r"e\.jsonl:1: no prompt field"):
        Decontaminator([p])
