"""The data commands, run as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys

from limakit.cli import main
from limakit.template import IGNORE


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "limakit", *args], capture_output=True, text=True, timeout=300
    )


def test_help_lists_stages():
    r = run("--help")
    assert r.returncode == 0
    for cmd in ("convert", "inspect", "demo"):
        assert cmd in r.stdout


def test_inspect_json_prints_exact_masks(tmp_path, tiny_model_dir, smollm2_tokenizer, capsys):
    data = tmp_path / "conv.jsonl"
    data.write_text(
        json.dumps(
            {
                "id": "c1",
                "messages": [
                    {"role": "user", "content": "Name a colour."},
                    {"role": "assistant", "content": "Blue."},
                    {"role": "user", "content": "Another?"},
                    {"role": "assistant", "content": "Green."},
                ],
            }
        )
        + "\n"
    )
    assert main(["inspect", "--model", tiny_model_dir, "--data", str(data), "--json"]) == 0
    row = json.loads(capsys.readouterr().out.strip())
    trained = [i for i, lab in zip(row["input_ids"], row["labels"]) if lab != IGNORE]
    assert smollm2_tokenizer.decode(trained) == "Blue.<|eot|>Green.<|eot|>"
    assert all(lab in (IGNORE, i) for i, lab in zip(row["input_ids"], row["labels"]))
    assert row["trained"] == len(trained)


def test_bad_input_exits_nonzero_with_file_and_line(tmp_path):
    data = tmp_path / "bad.jsonl"
    data.write_text(
        '{"messages": [{"role": "user", "content": "Q"}, {"role": "user", "content": "Q"}]}\n'
    )
    r = run("convert", str(data), str(tmp_path / "o.jsonl"), "--from", "limakit", "--to", "lima")
    assert r.returncode == 2
    assert f"{data}:1:" in r.stderr and "roles must alternate" in r.stderr
    assert not (tmp_path / "o.jsonl").exists()


def test_inspect_view_marks_trained_spans(tmp_path, tiny_model_dir, capsys):
    data = tmp_path / "one.jsonl"
    data.write_text(
        json.dumps(
            {
                "messages": [
                    {"role": "user", "content": "Say yes."},
                    {"role": "assistant", "content": "Yes."},
                ]
            }
        )
        + "\n"
    )
    assert main(["inspect", "--model", tiny_model_dir, "--data", str(data)]) == 0
    out = capsys.readouterr().out
    assert "⟦Yes.<|eot|>⟧" in out
    assert "⟦" not in out.split("⟦Yes")[0]  # the prompt is not marked as trained
