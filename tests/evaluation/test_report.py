"""Reports from judged folders."""

from __future__ import annotations

import pytest

from limakit.cli import main
from limakit.evaluation import JudgeConfig, judge_pairwise, write_report
from tests.evaluation.fake_server import FakeServer, always_first, prefer_marked
from tests.evaluation.helpers import write_pair


def test_report_has_bars_and_category_tables(tmp_path):
    a, b = write_pair(tmp_path, ["GOOD"] * 3 + ["weak"], ["weak"] * 3 + ["GOOD"])
    dirs = []
    for name, behaviour in (("fair", prefer_marked), ("biased", always_first)):
        with FakeServer(behaviour) as server:
            cfg = JudgeConfig(backend="openai", model="judge", base_url=server.url)
            judge_pairwise(a, b, cfg, tmp_path / name)
        dirs.append(tmp_path / name)
    md = write_report(dirs, tmp_path / "report")
    text = md.read_text()
    assert "![Win / Tie / Lose](winrates.png)" in text
    assert "| model-a vs model-b (fair) | 4 | 75.0%" in text
    assert "by category" in text and "cat-even" in text
    png = (tmp_path / "report" / "winrates.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    html = (tmp_path / "report" / "report.html").read_text()
    assert "<table>" in html and 'src="winrates.png"' in html


def test_report_of_a_missing_folder_is_a_clear_error(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nope"), "--out", str(tmp_path / "r")]) == 2
    assert "summary.json" in capsys.readouterr().err


def test_report_rejects_garbage_summary(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "summary.json").write_text("{not json")
    from limakit.core.errors import LimaError

    with pytest.raises(LimaError, match="invalid JSON"):
        write_report([tmp_path / "x"], tmp_path / "r")
