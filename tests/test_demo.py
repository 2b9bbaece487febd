"""`lima demo --quick` runs the whole loop offline and a rerun skips finished stages."""

from __future__ import annotations

import json

import pytest

from limakit.cli import main
from limakit.example import load_examples


@pytest.mark.slow
def test_demo_runs_end_to_end_and_resumes(tmp_path, smollm2_dir, capsys):
    out = tmp_path / "run"
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    examples = load_examples(out / "curate" / "examples.jsonl")
    assert len(examples) == 8 and {e.source for e in examples} <= {"manual", "sharegpt"}
    assert (out / "curate" / "card.md").exists()
    assert list((out / "train" / "checkpoints").glob("epoch-1"))
    for name in ("base", "lima"):
        answers = load_examples(out / "answers" / f"{name}.jsonl")
        assert len(answers) == 2 and all(a.meta["stop"] in ("eot", "length") for a in answers)
    summary = json.loads((out / "judge" / "summary.json").read_text())
    assert summary["n"] + summary["invalid"] == 2
    assert abs(summary["win"] + summary["tie"] + summary["lose"] - 1) < 1e-9 or summary["n"] == 0
    report = (out / "report" / "report.md").read_text()
    assert "winrates.png" in report and "Automatic checks" in report
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    capsys.readouterr()
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    assert capsys.readouterr().err.count("done earlier") == 5
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == before
