"""Reference similarity: the packaged MiniLM's cosine to the reference, minus a floor drawn from
the other prompts' references (loaded once for the module)."""

from __future__ import annotations

import numpy as np
import pytest

from limakit.core.errors import LimaError
from limakit.core.files import write_jsonl
from limakit.evaluation.similarity import (
    default_embed,
    derangement,
    own_reference,
    read_references,
    reference_similarity,
)
from limakit.records.example import Example, Message

# Six real answers on unrelated topics, keyed by prompt id.
REFS = {
    "bread": "Mix flour, water, salt and yeast, knead for ten minutes, let the dough rise for an "
    "hour, shape it and bake at 230 C until the crust is deep brown.",
    "python": "Use a list comprehension: squares = [x * x for x in numbers]. It builds a new list "
    "and is usually faster than appending in a for loop.",
    "tax": "Capital gains are taxed when you sell an asset for more than you paid; holding it "
    "longer than a year often qualifies for a lower long-term rate.",
    "guitar": "A G major chord: third fret of the low E string, second fret of the A string, "
    "third fret of the high E string; strum all six strings.",
    "sleep": "Keep a fixed bedtime, avoid screens and caffeine in the evening, and keep the "
    "bedroom dark and cool to fall asleep faster.",
    "mars": "Mars looks red because its surface dust is rich in iron oxide, the same compound "
    "that makes rust red.",
}


@pytest.fixture(scope="module")
def embed():
    return default_embed(device="cpu")


def test_derangement_moves_everything_and_is_seeded():
    for n in (2, 3, 7, 50):
        p = derangement(n, seed=n)
        assert sorted(p) == list(range(n)) and all(p[i] != i for i in range(n))
    assert derangement(9, seed=1) == derangement(9, seed=1) != derangement(9, seed=2)
    with pytest.raises(ValueError):
        derangement(1)


def test_an_answer_equal_to_its_reference_scores_high(embed):
    scores = reference_similarity(list(REFS.items()), REFS, embed)
    assert set(scores) == set(REFS)
    assert all(s > 0.7 for s in scores.values()), scores  # 1 minus the cosine of unrelated texts


def test_a_shuffled_pairing_scores_near_zero(embed):
    ids = sorted(REFS)
    floor = derangement(len(ids))
    # Answer prompt i with the reference of a prompt that is neither i nor its floor's: p(p(i)).
    wrong = [(ids[i], REFS[ids[floor[floor[i]]]]) for i in range(len(ids))]
    scores = reference_similarity(wrong, REFS, embed)
    assert abs(float(np.mean(list(scores.values())))) < 0.1, scores


def test_samples_are_averaged_per_prompt_and_prompts_without_reference_left_out():
    vec = {"a": [1.0, 0.0], "b": [0.0, 1.0], "good": [1.0, 0.0], "bad": [0.0, 1.0]}

    def embed(texts):
        return np.array([vec[t] for t in texts])

    answers = [("p1", "good"), ("p1", "bad"), ("p2", "b"), ("p3", "good")]
    scores = reference_similarity(answers, {"p1": "a", "p2": "b"}, embed)
    # p1: (1 - 0 + 0 - 1) / 2 = 0; p2: 1 - 0; p3 has no reference.
    assert scores == {"p1": 0.0, "p2": 1.0}
    assert reference_similarity([("p1", "a")], {"p1": "a"}, embed) == {}  # no floor with one


def test_references_from_a_file_and_from_the_answer_meta(tmp_path):
    path = tmp_path / "refs.jsonl"
    rows = [
        {"id": "a", "messages": [{"role": "user", "content": "Q"},
                                 {"role": "assistant", "content": "ref a"}]},
        {"id": "b", "messages": [{"role": "user", "content": "Q"}]},
    ]  # fmt: skip
    write_jsonl(path, rows)
    assert read_references(path) == ({"a": "ref a"}, 1)
    write_jsonl(path, [rows[0], rows[0]])
    with pytest.raises(LimaError, match="'a' appears twice"):
        read_references(path)
    turns = [Message("user", "1"), Message("assistant", "x"), Message("user", "2")]
    two = Example([*turns, Message("assistant", "y")], meta={"reference": ["r1", "r2"]})
    assert own_reference(two) == "r2"
    assert own_reference(Example(turns[:2], meta={"reference": "r"})) == "r"
    assert own_reference(Example(turns[:2])) is None
