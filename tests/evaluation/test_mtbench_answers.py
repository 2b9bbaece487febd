"""`lima mt-bench --answers`: other models' answer files are checked against the questions,
placed in FastChat's answer folder, and their unanswered questions are reported."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from limakit.cli import main
from limakit.core.files import write_jsonl
from limakit.evaluation.mtbench.single import run_mtbench
from tests.evaluation.fake_server import Act, FakeServer
from tests.evaluation.test_mtbench import fastchat_loaders

QUESTIONS = [
    {"question_id": 81 + i, "category": "writing", "turns": [f"Write {i}.", f"Shorter {i}."]}
    for i in range(8)
]


def answers(model: str, ids, *, full: bool = True, turns=("one", "two")) -> list[dict]:
    """FastChat answer lines; ``full=False``: only the fields grading needs."""
    rows = []
    for qid in ids:
        row = {
            "question_id": qid,
            "choices": [{"index": 0, "turns": [f"{model} {t}" for t in turns]}],
        }
        if full:
            row.update({"answer_id": f"a{qid}", "model_id": model, "tstamp": 1.5})
        rows.append(row)
    return rows


@pytest.fixture
def qfile(tmp_path) -> Path:
    path = tmp_path / "question.jsonl"
    write_jsonl(path, QUESTIONS)
    return path


def cli(tmp_path, qfile, *files, judge: str | None = None) -> list[str]:
    args = ["mt-bench", "--answers", *map(str, files), "--questions", str(qfile)]
    args += ["--out", str(tmp_path / "out")]
    return args + (["--judge", judge] if judge else [])


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch):
    monkeypatch.setenv("COLUMNS", "1000")  # error messages are printed unwrapped


def error_of(capsys) -> str:
    return " ".join(capsys.readouterr().err.split())


def test_answers_files_are_placed_where_fastchat_lists_them(tmp_path, qfile):
    ids = [q["question_id"] for q in QUESTIONS]
    full, bare = tmp_path / "in" / "model-full.jsonl", tmp_path / "in" / "model-bare.jsonl"
    write_jsonl(full, answers("model-full", ids))
    write_jsonl(bare, answers("model-bare", ids[:3], full=False))
    out = tmp_path / "out"
    result = run_mtbench(out, questions_path=qfile, other_answers=[full, bare], progress=False)
    folder = out / "model_answer"
    assert result["answers"] == {
        "model-full": str(folder / "model-full.jsonl"),
        "model-bare": str(folder / "model-bare.jsonl"),
    }
    # FastChat's own functions list the models and read their answers from the folder.
    fc = fastchat_loaders()
    assert sorted(fc["get_model_list"](str(folder))) == ["model-bare", "model-full"]
    loaded = fc["load_model_answers"](str(folder))
    assert loaded["model-full"] == {row["question_id"]: row for row in answers("model-full", ids)}
    bare_rows = loaded["model-bare"]
    assert sorted(bare_rows) == ids[:3]
    for row in bare_rows.values():  # completed to FastChat's answer layout
        assert set(row) == {"question_id", "answer_id", "model_id", "choices", "tstamp"}
        assert row["model_id"] == "model-bare" and row["choices"][0]["turns"][0] == "model-bare one"
    # A rerun with the same files writes nothing; a file that grew is placed again.
    before = (folder / "model-bare.jsonl").stat().st_mtime_ns
    run_mtbench(out, questions_path=qfile, other_answers=[full, bare], progress=False)
    assert (folder / "model-bare.jsonl").stat().st_mtime_ns == before
    write_jsonl(bare, answers("model-bare", ids, full=False))
    run_mtbench(out, questions_path=qfile, other_answers=[full, bare], progress=False)
    assert sorted(fc["load_model_answers"](str(folder))["model-bare"]) == ids


def test_answers_that_differ_from_those_placed_before_are_refused(tmp_path, qfile, capsys):
    path = tmp_path / "in" / "m.jsonl"
    write_jsonl(path, answers("m", [81, 82]))
    assert main(cli(tmp_path, qfile, path)) == 0
    write_jsonl(path, answers("m", [81, 82], turns=("changed", "two")))
    assert main(cli(tmp_path, qfile, path)) == 2
    err = error_of(capsys)
    placed = tmp_path / "out" / "model_answer" / "m.jsonl"
    assert f"{placed} holds other answers of model 'm' than {path} (question 81)" in err


def test_partial_answers_say_how_many_questions_are_unanswered(tmp_path, qfile, capsys):
    path = tmp_path / "in" / "partial.jsonl"
    write_jsonl(path, answers("partial", [81]))
    with FakeServer(lambda body, n: Act("Fine. Rating: [[6]]")) as server:
        judge = tmp_path / "judge.yaml"
        judge.write_text(f"backend: openai\nmodel: judge-x\nbase_url: {server.url}\n")
        assert main(cli(tmp_path, qfile, path, judge=str(judge))) == 0
        assert len(server.calls) == 2
    out, err = capsys.readouterr()
    score = next(line for line in out.splitlines() if "MT-Bench score" in line)
    assert "over 2 grades" in score
    assert "7 of 8 questions unanswered by partial (not graded)" in score
    assert f"{path}: model partial answers 1 of 8 questions" in " ".join(err.split())
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["models"]["partial"]["unanswered"] == 7


def _write_lines(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines))
    return path


@pytest.mark.parametrize(
    "lines, expected",
    [
        ([], "{path}: no answers in the file"),
        (
            [json.dumps(answers("m", ["81"])[0])],
            "{path}:1: question_id '81' is a string, and the questions' id is the integer 81",
        ),
        (
            [json.dumps(answers("m", [81])[0]), json.dumps(answers("m", ["x"])[0])],
            None,  # one unknown id beside a known one: a warning, not an error
        ),
        (
            [json.dumps(answers("m", [7])[0])],
            "{path}: none of its 1 answers is to a question in {qfile} (line 1: question_id 7)",
        ),
        (
            [json.dumps({"question_id": True, "choices": [{"turns": ["a"]}]})],
            "{path}:1: question_id must be an integer or a non-empty string",
        ),  # fmt: skip
    ],
    ids=["empty", "string-ids", "one-unknown", "none-known", "bool-id"],
)
def test_bad_answers_files_are_named_with_the_record_and_the_rule(
    tmp_path, qfile, capsys, lines, expected
):
    path = _write_lines(tmp_path / "in" / "m.jsonl", lines)
    rc = main(cli(tmp_path, qfile, path))  # no --judge: the files are checked all the same
    err = error_of(capsys)
    if expected is None:
        assert rc == 0 and f"warning: {path}: 1 answers to questions not in {qfile}" in err
        return
    assert rc == 2
    assert expected.format(path=path, qfile=qfile) in err
    assert str(tmp_path / "out") not in err  # the input is named, not an output


def test_a_missing_answers_file_is_an_error_without_a_judge(tmp_path, qfile, capsys):
    missing = tmp_path / "nowhere" / "m.jsonl"
    assert main(cli(tmp_path, qfile, missing)) == 2
    assert f"{missing}: no such answers file (--answers)" in error_of(capsys)


def test_two_answer_files_of_one_model_name_are_refused(tmp_path, qfile, capsys):
    a = tmp_path / "one" / "m.jsonl"
    b = tmp_path / "two" / "m.jsonl"
    write_jsonl(a, answers("m", [81]))
    write_jsonl(b, answers("m", [82]))
    assert main(cli(tmp_path, qfile, a, b)) == 2
    assert f"{a} and {b} both name model 'm'" in error_of(capsys)
