"""Reports from judged folders."""

from __future__ import annotations

import json

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


def _people_from_labelstudio(tmp_path):
    """A folder of two people's verdicts, imported from a Label Studio JSON export."""
    from limakit.annotate.interop import export_labelstudio, import_labelstudio
    from tests.annotate.helpers import write_answers

    a, b = write_answers(tmp_path, ["GOOD 1", "GOOD 2", "GOOD 3"], ["weak 1", "weak 2", "weak 3"])
    export_labelstudio(a, b, tmp_path / "ls")
    tasks = json.loads((tmp_path / "ls" / "labelstudio-tasks.json").read_text())
    choices = ["A is better", "B is better", "Neither is significantly better"]
    exported = [
        {
            "id": n,
            "data": t["data"],
            "annotations": [
                {
                    "id": 10 * n + user,
                    "completed_by": {"id": user, "email": f"person{user}@example.org"},
                    "was_cancelled": False,
                    "result": [
                        {
                            "from_name": "preference",
                            "to_name": "prompt",
                            "type": "choices",
                            "value": {"choices": [choices[(n + user) % 3]]},
                        }
                    ],
                }
                for user in (1, 2)
            ],
        }
        for n, t in enumerate(tasks)
    ]
    (tmp_path / "export.json").write_text(json.dumps(exported))
    import_labelstudio(tmp_path / "export.json", tmp_path / "ls" / "mapping.jsonl", tmp_path / "p")
    return tmp_path / "p"


def test_report_on_peoples_verdicts_alone(tmp_path, capsys):
    people = _people_from_labelstudio(tmp_path)
    assert main(["report", str(people), "--out", str(tmp_path / "r")]) == 0
    printed = capsys.readouterr().out
    text = (tmp_path / "r" / "report.md").read_text()
    assert "| model-a vs model-b | 3 |" in text  # their Win / Tie / Lose...
    # ...and their agreement, every pair judged differently by the two: 0 + 0.5 + 0.5 over 3
    assert "| model-a vs model-b | annotators with each other (2 people) | 3 | 3 | 33.3%" in text
    assert "majority vs" not in text  # no judge folder, no comparison with one
    assert "agreement, model-a vs model-b, annotators: 33.3%" in printed
    # The README's `lima report people judge` before any judge ran: the error says what to do
    assert main(["report", str(people), str(tmp_path / "judge"), "--out", str(tmp_path / "r")]) == 2
    assert "not found" in capsys.readouterr().err
    from limakit.core.errors import LimaError

    with pytest.raises(LimaError) as e:
        write_report([people, tmp_path / "judge"], tmp_path / "r")
    assert str(e.value).startswith(f"{tmp_path / 'judge' / 'summary.json'}: not found (")
    assert str(e.value).endswith("leave it out to report on the other folders alone")
