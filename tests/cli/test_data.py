"""The data commands, run as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys

from limakit.cli import main
from limakit.records.template import IGNORE


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


def flat(text: str) -> str:
    """Text without whitespace: rich wraps long error lines at the terminal width."""
    return "".join(text.split())


GOOD = {
    "messages": [{"role": "user", "content": "Say yes."}, {"role": "assistant", "content": "Yes."}]
}
BAD = {"messages": [{"role": "user", "content": "Q"}, {"role": "user", "content": "Q"}]}


def test_convert_skip_invalid_prints_counts_and_writes_rejections(tmp_path):
    data = tmp_path / "in.jsonl"
    data.write_text(json.dumps(GOOD) + "\n" + json.dumps(BAD) + "\n" + json.dumps(GOOD) + "\n")
    out = tmp_path / "out" / "o.jsonl"
    r = run("convert", str(data), str(out), "--from", "limakit", "--to", "lima", "--skip-invalid")
    assert r.returncode == 0, r.stderr
    assert "wrote 2 records" in r.stderr
    assert (
        f"skipped 1 invalid of 3 records (each with its reason in {out.parent / 'rejected.jsonl'})"
        in r.stderr
    )
    (row,) = [json.loads(line) for line in (out.parent / "rejected.jsonl").read_text().splitlines()]
    assert row["where"] == f"{data}:2" and "roles must alternate" in row["reason"]
    assert row["record"] == BAD


def test_empty_inputs_exit_2_and_write_nothing(tmp_path, tiny_model_dir, capsys):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    out = tmp_path / "o.jsonl"
    r = run("convert", str(empty), str(out), "--from", "limakit")
    assert r.returncode == 2 and "empty" in r.stderr and not out.exists()
    assert main(["inspect", "--model", tiny_model_dir, "--data", str(empty)]) == 2
    assert flat(f"{empty}: no records (the file is empty)") in flat(capsys.readouterr().err)


def test_inspect_skip_invalid_goes_on_and_names_each_rejection(tmp_path, tiny_model_dir, capsys):
    data = tmp_path / "data" / "mixed.jsonl"
    data.parent.mkdir()
    data.write_text(json.dumps(BAD) + "\n" + json.dumps(GOOD) + "\n")
    assert main(["inspect", "--model", tiny_model_dir, "--data", str(data)]) == 2  # strict default
    assert flat("mixed.jsonl:1: message 2: roles must alternate") in flat(capsys.readouterr().err)
    assert (
        main(
            ["inspect", "--model", tiny_model_dir, "--data", str(data), "--skip-invalid", "--json"]
        )
        == 0
    )
    captured = capsys.readouterr()
    assert len(captured.out.splitlines()) == 1  # the good example was shown
    assert "skipped 1 invalid of 2 records" in captured.err
    (row,) = [json.loads(x) for x in (data.parent / "rejected.jsonl").read_text().splitlines()]
    assert row["where"] == f"{data}:1"
    elsewhere = tmp_path / "rej"
    args = ["inspect", "--model", tiny_model_dir, "--data", str(data), "--skip-invalid", "--json"]
    assert main([*args, "--rejected-dir", str(elsewhere)]) == 0
    assert (elsewhere / "rejected.jsonl").read_text() == (
        data.parent / "rejected.jsonl"
    ).read_text()


def test_convert_refuses_a_lone_surrogate_by_file_and_line(tmp_path, capsys):
    data = tmp_path / "in.jsonl"
    data.write_text(
        json.dumps(GOOD)
        + "\n"
        + '{"messages": [{"role": "user", "content": "\\ud800"}, {"role": "assistant", "content": "A"}]}\n'
    )
    out = tmp_path / "out" / "o.jsonl"
    args = ["convert", str(data), str(out), "--from", "limakit"]
    assert main(args) == 2
    assert flat(f"{data}:2: a lone surrogate (\\ud800) in messages[0].content") in flat(
        capsys.readouterr().err
    )
    assert main([*args, "--skip-invalid"]) == 0
    assert "skipped 1 invalid of 2 records" in capsys.readouterr().err
    assert len(out.read_text().splitlines()) == 1


def test_a_folder_given_as_a_file_exits_2_naming_it(tmp_path, capsys):
    folder = tmp_path / "in.jsonl"
    folder.mkdir()
    out = tmp_path / "o.jsonl"
    assert main(["convert", str(folder), str(out), "--from", "limakit"]) == 2
    assert flat(f"{folder}: is a folder; expected a file") in flat(capsys.readouterr().err)
    data = tmp_path / "good.jsonl"
    data.write_text(json.dumps(GOOD) + "\n")
    assert main(["convert", str(data), str(tmp_path), "--from", "limakit"]) == 2
    assert flat(f"{tmp_path}: is a folder") in flat(capsys.readouterr().err)
    assert not out.exists()


def test_convert_to_a_json_file_writes_a_json_list(tmp_path):
    data = tmp_path / "answers.jsonl"
    row = {**GOOD, "meta": {"model": "lima-7b"}}
    data.write_text(json.dumps(row) + "\n" + json.dumps(row) + "\n")
    out = tmp_path / "outputs.json"
    r = run("convert", str(data), str(out), "--from", "limakit", "--to", "alpaca")
    assert r.returncode == 0, r.stderr
    assert (
        json.loads(out.read_text())
        == [{"instruction": "Say yes.", "input": "", "output": "Yes.", "generator": "lima-7b"}] * 2
    )


def test_every_jsonl_input_refuses_a_line_over_the_limit(tmp_path, capsys, monkeypatch):
    """convert, inspect, export and curate --pool read JSONL through the one bounded reader: a
    line over LIMAKIT_MAX_LINE_BYTES is refused by file and line, or with --skip-invalid counted
    and written to rejected.jsonl like any other invalid record."""
    from tests.evaluation.helpers import answer

    monkeypatch.setenv("LIMAKIT_MAX_LINE_BYTES", "400")
    long = {
        "messages": [
            {"role": "user", "content": "Q?"},
            {"role": "assistant", "content": "word " * 100},
        ]
    }
    data = tmp_path / "in.jsonl"
    data.write_text(json.dumps(GOOD) + "\n" + json.dumps(long) + "\n" + json.dumps(GOOD) + "\n")
    says = flat(f"{data}:2: line longer than 400 bytes (limit set by LIMAKIT_MAX_LINE_BYTES")

    out = tmp_path / "out" / "o.jsonl"
    assert main(["convert", str(data), str(out), "--from", "limakit"]) == 2
    assert says in flat(capsys.readouterr().err) and not out.exists()
    assert main(["convert", str(data), str(out), "--from", "limakit", "--skip-invalid"]) == 0
    assert "skipped 1 invalid of 3 records" in capsys.readouterr().err
    (row,) = [json.loads(x) for x in (out.parent / "rejected.jsonl").read_text().splitlines()]
    assert row["where"] == f"{data}:2" and row["reason"].startswith("line longer than 400 bytes")

    pool_args = ["curate", "--pool", str(data), "--select", "random", "--n", "5", "--no-progress"]
    assert main([*pool_args, "--out", str(tmp_path / "strict")]) == 2
    assert says in flat(capsys.readouterr().err)
    assert main([*pool_args, "--out", str(tmp_path / "pool"), "--skip-invalid"]) == 0
    rows = [json.loads(x) for x in (tmp_path / "pool" / "rejected.jsonl").read_text().splitlines()]
    assert [(r["id"], r["rule"]) for r in rows if r["id"] == f"{data}:2"] == [
        (f"{data}:2", "invalid_record")
    ]
    capsys.readouterr()

    answers = tmp_path / "answers.jsonl"
    answers.write_text(
        json.dumps(answer(0, "short", "m")) + "\n" + json.dumps(answer(1, "x" * 500, "m")) + "\n"
    )
    assert main(["export", "alpaca-eval", str(answers), "--out", str(tmp_path / "o.json")]) == 2
    assert flat(f"{answers}:2: line longer than 400 bytes") in flat(capsys.readouterr().err)
