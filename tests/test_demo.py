"""`lima demo --quick` runs end to end offline and a rerun skips finished stages."""

from __future__ import annotations

import json

import pytest

from limakit.cli import main


@pytest.mark.slow
def test_demo_runs_end_to_end_and_resumes(tmp_path, smollm2_dir, capsys):
    out = tmp_path / "run"
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    masks = [json.loads(line) for line in (out / "masks.jsonl").read_text().splitlines()]
    assert masks and all(row["trained"] > 0 for row in masks)
    answers = (out / "answers-base.jsonl").read_text().splitlines()
    assert len(answers) >= 2
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    capsys.readouterr()
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    assert "done earlier" in capsys.readouterr().err
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before
