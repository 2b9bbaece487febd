"""Score (win + tie/2) and the length-controlled win rate in every pairwise summary and report."""

from __future__ import annotations

import pytest

from limakit.cli import main
from limakit.core.files import read_json
from limakit.evaluation import JudgeConfig, judge_pairwise, write_report
from limakit.evaluation.lc import (
    MEANING,
    Judged,
    lc_or_reason,
    lc_table,
    lc_win_rate,
    read_verdicts,
)
from limakit.evaluation.metrics import pairwise_stats
from limakit.evaluation.report import report_with_lines
from tests.evaluation.fake_server import FakeServer, prefer_marked
from tests.evaluation.helpers import write_pair


def long_good_pair(tmp_path, n: int = 24):
    """A's answers are long and marked GOOD on most prompts: a judge that likes them likes length."""
    a_texts, b_texts = [], []
    for i in range(n):
        if i % 4 == 3:  # B wins these, with a short answer
            a_texts.append("weak " * (5 + i))
            b_texts.append("GOOD")
        elif i % 5 == 0:  # both marked: a tie
            a_texts.append("GOOD " * (3 + i))
            b_texts.append("GOOD " * 2)
        else:
            a_texts.append("GOOD " * (10 + 3 * i))
            b_texts.append("weak " * (1 + i % 3))
    return write_pair(tmp_path, a_texts, b_texts)


def judged(tmp_path, a, b, name="out", **cfg):
    with FakeServer(prefer_marked) as server:
        judge = JudgeConfig(
            backend="openai", model="judge", base_url=server.url, bootstrap=50, **cfg
        )
        return judge_pairwise(a, b, judge, tmp_path / name)


def test_summary_has_score_and_the_lc_win_rate_of_lc_py(tmp_path):
    a, b = long_good_pair(tmp_path)
    s = judged(tmp_path, a, b)
    assert s["score"] == pytest.approx(s["win"] + s["tie"] / 2, abs=1e-6)
    lo, hi = s["score_ci"]
    assert lo <= s["score"] <= hi
    # The summary's LC figure is lc.py's, read back from the verdicts it wrote (as a fraction).
    ref = lc_win_rate(read_verdicts(tmp_path / "out"), resamples=50)
    assert s["lc_win_rate"] == pytest.approx(ref["lc_win_rate"] / 100, abs=1e-6)
    assert s["lc_win_rate_ci"] == pytest.approx([x / 100 for x in ref["lc_win_rate_ci"]], abs=1e-6)
    assert ref["win_rate"] == pytest.approx(100 * s["score"], abs=1e-4)
    assert s["lc"]["reason"] is None and s["lc"]["formula"] == "length_controlled_minimal"
    # The longer answer wins: holding length equal takes some of A's wins away.
    assert s["lc_win_rate"] < s["score"]
    assert read_json(tmp_path / "out" / "summary.json")["lc_win_rate"] == s["lc_win_rate"]


def test_too_few_pairs_say_so_everywhere(tmp_path, capsys):
    a, b = write_pair(tmp_path, ["GOOD long answer"] * 3 + ["weak"], ["weak"] * 3 + ["GOOD"])
    with FakeServer(prefer_marked) as server:
        (tmp_path / "j.yaml").write_text(
            f"backend: openai\nmodel: judge\nbase_url: {server.url}\nbootstrap: 20\n"
        )
        args = ["judge", "pairwise", "--a", str(a), "--b", str(b)]
        assert main([*args, "--judge", str(tmp_path / "j.yaml"), "--out", str(tmp_path / "o")]) == 0
    printed = capsys.readouterr().out
    assert "score  75.0%" in printed  # 3 wins, 1 loss
    assert "LC win rate n/a (too few pairs (4 valid verdicts, 20 needed))" in printed
    assert MEANING in printed
    s = read_json(tmp_path / "o" / "summary.json")
    assert s["lc_win_rate"] is None and s["lc_win_rate_ci"] is None
    md, lines = report_with_lines([tmp_path / "o"], tmp_path / "r")
    text = md.read_text()
    assert "| n/a (too few pairs (4 valid verdicts, 20 needed)) |" in text
    assert "LC win rate [95% CI]" in text and MEANING in text
    assert "LC win rate n/a (too few pairs" in lines[0] and "score 75.0%" in lines[0]


def test_no_length_variation_is_not_a_crash(tmp_path):
    a, b = write_pair(tmp_path, ["GOOD"] * 16 + ["weak"] * 8, ["weak"] * 16 + ["GOOD"] * 8)
    s = judged(tmp_path, a, b)
    assert s["n"] == 24 and s["lc_win_rate"] is None
    assert s["lc"]["reason"].startswith("no length variation")
    assert s["score"] == pytest.approx(16 / 24, abs=1e-6)


def test_every_verdict_a_win_fits_quietly(capfd):
    # liblinear would print a warning on stdout for the weightless label; the fit stays quiet.
    rows = [Judged(f"p{i}", "m", "b", 1.0, 100 + 7 * i, 90) for i in range(24)]
    r = lc_or_reason(rows, resamples=20)
    assert r["reason"] is None and r["lc_win_rate"] > 99
    assert "WARNING" not in capfd.readouterr().out


def test_report_shows_score_and_lc(tmp_path):
    a, b = long_good_pair(tmp_path)
    s = judged(tmp_path, a, b)
    md = write_report([tmp_path / "out"], tmp_path / "report")
    text = md.read_text()
    header = next(x for x in text.splitlines() if x.startswith("| comparison"))
    assert "score (win + tie/2) [95% CI]" in header and "LC win rate [95% CI]" in header
    row = next(x for x in text.splitlines() if x.startswith("| model-a vs model-b"))
    cells = [c.strip() for c in row.split("|")[1:-1]]
    assert cells[2].startswith(f"{100 * s['score']:.1f}% [")
    assert cells[3].startswith(f"{100 * s['lc_win_rate']:.1f}% [")
    assert MEANING in text
    assert "score (win + tie/2)" in text.split("by category")[1]  # the category table too


def test_pairwise_stats_score_interval():
    s = pairwise_stats(["win"] * 6 + ["tie"] * 2 + ["lose"] * 2, resamples=200)
    assert s["score"] == pytest.approx(0.7)
    assert s["score_ci"][0] < 0.7 < s["score_ci"][1]
    assert pairwise_stats([])["score"] == 0.0


def rows_for(model: str, n: int, shift: int = 0) -> list[Judged]:
    out = []
    for i in range(n):
        lm, lb = 100 + (i * 37 + shift) % 400, 200 + (i * 53) % 200
        pref = 0.5 if i % 7 == 0 else float((lm > lb) != (i % 5 == 0))
        out.append(Judged(f"p{i}", model, "base", pref, lm, lb))
    return out


def test_lc_table_with_min_pairs_reports_instead_of_raising():
    rows = rows_for("m1", 40) + rows_for("m2", 40, 91) + rows_for("tiny", 3)
    out = lc_table(rows, resamples=20, min_pairs=10)
    assert out["tiny"]["lc_win_rate"] is None and "too few pairs" in out["tiny"]["reason"]
    assert out["tiny"]["win_rate"] is not None
    for m in ("m1", "m2"):  # the two fitted ones still share the difficulty term
        assert out[m]["reason"] is None
        assert out[m]["formula"].startswith("length_controlled_v1")
    with pytest.raises(Exception, match="fewer than two"):
        lc_table(rows_for("tiny", 1), resamples=20)  # without min_pairs: the error, as before
