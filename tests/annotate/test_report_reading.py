"""A pairwise report says in words when its own figures undercut it (issue 16)."""

from __future__ import annotations

from limakit.cli import main
from limakit.evaluation import JudgeConfig, judge_pairwise
from tests.evaluation.fake_server import FakeServer, always_first, prefer_marked
from tests.evaluation.helpers import write_pair


def judge(tmp_path, name, a_texts, b_texts, behaviour):
    d = tmp_path / f"{name}-answers"
    d.mkdir()
    a, b = write_pair(d, a_texts, b_texts)
    with FakeServer(behaviour) as server:
        cfg = JudgeConfig(backend="openai", model=f"judge-{name}", base_url=server.url)
        judge_pairwise(a, b, cfg, tmp_path / name)
    return tmp_path / name


def test_report_warns_on_an_inconsistent_judge_and_an_undecided_win_rate(tmp_path, capsys):
    clear = judge(tmp_path, "clear", ["GOOD"] * 6, ["weak"] * 6, prefer_marked)
    biased = judge(tmp_path, "biased", ["GOOD"] * 6, ["weak"] * 6, always_first)
    even = judge(tmp_path, "even", ["GOOD", "weak"] * 4, ["weak", "GOOD"] * 4, prefer_marked)
    dirs = [str(clear), str(biased), str(even)]
    assert main(["report", *dirs, "--out", str(tmp_path / "r")]) == 0
    printed = capsys.readouterr().out
    text = (tmp_path / "r" / "report.md").read_text()
    reading = {
        name: line.rsplit(" | ", 1)[1]
        for name in ("clear", "biased", "even")
        for line in text.splitlines()
        if line.startswith(f"| model-a vs model-b ({name}) |")
    }
    assert reading["clear"] == "- |"
    assert reading["biased"] == "judge unreliable (consistency 0.0% < 50%) |"
    assert reading["even"] == "win rate undecided (95% CI spans 50%) |"
    assert "Caution, model-a vs model-b (biased): the judge gave the same verdict" in text
    assert "Caution, model-a vs model-b (even): the 95% interval of the win rate" in text
    assert "Caution, model-a vs model-b (clear)" not in text
    html = (tmp_path / "r" / "report.html").read_text()
    assert "Caution, model-a vs model-b (biased)" in html
    # the CLI summary says the same next to each comparison's figures
    blocks = printed.split("model-a vs model-b (")
    by_name = {b.split(")")[0]: b for b in blocks[1:]}
    assert "caution" not in by_name["clear"]
    assert "caution: the judge gave the same verdict in both answer orders" in by_name["biased"]
    assert "caution: the 95% interval of the win rate" in by_name["even"]
