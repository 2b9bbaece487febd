"""The judging component's prompt files and verdict parsers, which every judge path shares."""

from __future__ import annotations

import math

import pytest

from limakit.backtranslate.rating import rating_prompt
from limakit.curation.scoring import score_prompt
from limakit.judging import (
    LABELS,
    PROMPT_DIR,
    Outcome,
    ScalePrompt,
    load_prompt_file,
    parse_verdict,
)


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("Both fine but A is deeper.\n[[A]]", "A"),
        ("[[B]]", "B"),
        ("Neither stands out. [[C]]", "C"),
        ("verdict: [[neither]]", "C"),
        ("Final verdict: B", "B"),
        ("**A is significantly better**", "A"),
        ("I cannot decide.", None),
        ("[[A]] ... on reflection [[B]]", None),
        ("", None),
        ("[[D]]", None),
    ],
)
def test_pairwise_parser_is_strict(text, label):
    assert parse_verdict(text, LABELS["pairwise"]) == label


def test_a_scale_prompt_reads_numbers_on_its_own_scale_only():
    base = load_prompt_file(PROMPT_DIR / "select-rating-v1.txt", "likert")
    five, six = ScalePrompt(base, 5), ScalePrompt(base, 6)
    assert five.labels == ("1", "2", "3", "4", "5")
    assert five.parse("Helpful. [[5]]") == "5"
    assert five.parse("Helpful. [[6]]") is None
    assert six.parse("Helpful. [[6]]") == "6"
    assert five.version == base.version  # the file's version keys the reply cache


def test_a_scale_prompt_scores_by_label_probabilities_when_it_has_them():
    prompt = ScalePrompt(load_prompt_file(PROMPT_DIR / "select-rating-v1.txt", "likert"), 5)
    assert prompt.score(Outcome(label="4")) == 4.0
    assert prompt.score(Outcome(label="2", probs={"1": 0.5, "5": 0.5})) == 3.0
    assert math.isnan(prompt.score(Outcome()))


def test_curation_and_backtranslation_ask_through_the_same_prompt_type():
    """One prompt type for both; back-translation keeps its stricter reader (one [[N]] only)."""
    curation, rating = score_prompt("quality"), rating_prompt()
    assert isinstance(curation, ScalePrompt) and isinstance(rating, ScalePrompt)
    assert curation.labels[-1] == "6" and rating.labels[-1] == "5"
    twice = "Good. [[5]] and again [[5]]"
    assert curation.parse(twice) == "5"  # one distinct verdict is enough for parse_verdict
    assert rating.parse(twice) is None
    with pytest.raises(Exception, match="unknown score kind"):
        score_prompt("vibes")
