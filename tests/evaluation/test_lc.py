"""The length-controlled win rate against AlpacaEval's own figure, and its inputs from verdicts."""

from __future__ import annotations

import json

import pytest

from limakit.core.errors import LimaError
from limakit.core.files import write_json, write_jsonl
from limakit.evaluation.lc import Judged, lc_table, lc_win_rate, read_verdicts


def longer_wins_table(model: str = "model", baseline: str = "base", shift: int = 0) -> list[Judged]:
    """60 prompts; the judge prefers the longer answer except on every 6th prompt, ties every 9th."""
    rows = []
    for i in range(60):
        lm = 150 + (i * 37 + shift) % 600
        lb = 250 + (i * 53) % 300
        if i % 9 == 0:
            pref = 0.5
        else:
            pref = 1.0 if (lm > lb) != (i % 6 == 0) else 0.0
        rows.append(Judged(f"p{i}", model, baseline, pref, lm, lb))
    return rows


# Reference numbers from AlpacaEval's own implementation (alpaca_eval 0.6.6, scikit-learn 1.9.1):
# the same 60 rows as an annotations DataFrame (output_1 = "b" * len_baseline, output_2 =
# "m" * len_model, generator_1 "base", generator_2 "model", preference 2 / 1 / 1.5 for a model
# win / baseline win / tie), passed to
#   alpaca_eval.metrics.glm_winrate.get_length_controlled_winrate(
#       df, glm_name="length_controlled_minimal", save_weights_dir=None)
# with the module's hf_hub_download replaced by a function returning a local df_gamed.csv of
# zeros (the minimal formula reads no column of it; the call only needs a file, offline). It gave
# length_controlled_winrate 33.820950521710266 and win_rate 45.83333333333333; its fitted
# coefficients were -2.73984898 for np.tanh(std_delta_len) (baseline minus model there) and
# -0.67128349 for the model term, with C = 21.5443469 chosen by its cross-validation.
ALPACA_EVAL_LC = 33.820950521710266
ALPACA_EVAL_WIN = 45.83333333333333


def test_matches_alpaca_eval_length_controlled_minimal():
    r = lc_win_rate(longer_wins_table(), resamples=50)
    assert r["lc_win_rate"] == pytest.approx(ALPACA_EVAL_LC, abs=1e-3)
    assert r["win_rate"] == pytest.approx(ALPACA_EVAL_WIN, abs=1e-6)
    assert r["C"] == pytest.approx(21.5443469, rel=1e-6)
    # The judge likes length: the slope is positive (model minus baseline here), and once length
    # is held equal the model's win rate drops below its raw one.
    assert r["coefficients"]["length"] == pytest.approx(2.73984898, abs=1e-3)
    assert r["coefficients"]["model"] == pytest.approx(-0.67128349, abs=1e-3)
    assert r["lc_win_rate"] < r["win_rate"]
    lo, hi = r["lc_win_rate_ci"]
    assert lo < r["lc_win_rate"] < hi
    assert (r["wins"], r["ties"], r["losses"]) == (24, 7, 29)


def test_score_is_wins_plus_half_ties_and_invalid_rows_are_left_out():
    rows = [
        Judged("a", "m", "b", 1.0, 10, 10),
        Judged("b", "m", "b", 0.5, 20, 10),
        Judged("c", "m", "b", 0.0, 10, 30),
        Judged("d", "m", "b", None, 10, 30),
    ]
    r = lc_win_rate(rows, resamples=20)
    assert r["win_rate"] == pytest.approx(100 * (1 + 0.5) / 3, abs=1e-5)
    assert r["n"] == 3 and r["invalid"] == 1


def test_equal_lengths_lc_equals_raw_win_rate():
    # With no length differences there is nothing to correct: LC is the raw win rate.
    rows = [Judged(f"p{i}", "m", "b", 1.0 if i % 4 else 0.0, 100, 100) for i in range(40)]
    r = lc_win_rate(rows, resamples=20)
    assert r["lc_win_rate"] == pytest.approx(r["win_rate"], abs=1.0)


def test_three_models_add_instruction_difficulty():
    rows = longer_wins_table("m1") + longer_wins_table("m2", shift=101)
    out = lc_table(rows, resamples=20)
    assert set(out) == {"m1", "m2"}
    for r in out.values():
        assert "instruction_difficulty" in r["coefficients"]
        assert r["formula"].startswith("length_controlled_v1")
        assert 0 <= r["lc_win_rate"] <= 100
    alone = lc_table(rows, resamples=20, difficulty=False)
    assert alone["m1"]["lc_win_rate"] == pytest.approx(ALPACA_EVAL_LC, abs=1e-3)


def test_one_model_only():
    with pytest.raises(LimaError, match="one model"):
        lc_win_rate(longer_wins_table("m1") + longer_wins_table("m2"))


def test_read_verdicts_of_a_pairwise_folder(tmp_path):
    write_json(
        tmp_path / "summary.json",
        {"protocol": "pairwise", "a": {"model": "lima"}, "b": {"model": "base"}},
    )
    write_jsonl(
        tmp_path / "verdicts.jsonl",
        [
            {"id": "p0", "sample": 0, "result": "win", "len_a": 50, "len_b": 10},
            {"id": "p1", "sample": 0, "result": "tie", "len_a": 5, "len_b": 10},
            {"id": "p2", "sample": 0, "result": "invalid", "len_a": 5, "len_b": 10},
        ],
    )
    rows = read_verdicts(tmp_path)
    assert [(r.model, r.baseline, r.preference, r.len_model) for r in rows] == [
        ("lima", "base", 1.0, 50),
        ("lima", "base", 0.5, 5),
        ("lima", "base", None, 5),
    ]
    flipped = read_verdicts(tmp_path / "verdicts.jsonl", baseline="a")
    assert [(r.model, r.preference, r.len_model) for r in flipped][:2] == [
        ("base", 0.0, 10),
        ("base", 0.5, 10),
    ]
    (tmp_path / "verdicts.jsonl").write_text(json.dumps({"id": "x"}) + "\n")
    with pytest.raises(LimaError, match="verdicts.jsonl:1"):
        read_verdicts(tmp_path)
