"""`lima export`: AlpacaEval outputs and annotations, Arena-Hard-Auto answers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from limakit.cli import main
from limakit.core.files import write_jsonl
from limakit.evaluation import JudgeConfig, judge_pairwise
from limakit.evaluation.lc import lc_win_rate, read_verdicts
from tests.evaluation.fake_server import FakeServer, prefer_marked
from tests.evaluation.helpers import answer, write_pair

A_TEXTS = ["GOOD a0", "GOOD a1 longer", "weak a2", "GOOD a3"]
B_TEXTS = ["weak b0", "weak b1", "GOOD b2 is long", "GOOD b3"]


def test_alpaca_eval_outputs(tmp_path):
    a, b = write_pair(tmp_path, A_TEXTS, B_TEXTS)
    out = tmp_path / "sub" / "model_outputs.json"
    assert main(["export", "alpaca-eval", str(a), str(b), "--out", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert len(rows) == 8
    assert rows[0] == {
        "instruction": "Question 0: how do I do thing 0?",
        "output": "GOOD a0",
        "generator": "model-a",
        "dataset": "cat-even",
    }
    assert {r["generator"] for r in rows} == {"model-a", "model-b"}


def test_alpaca_eval_annotations_from_pairwise_verdicts(tmp_path):
    a, b = write_pair(tmp_path, A_TEXTS, B_TEXTS)
    cfg = JudgeConfig(backend="openai", model="judge", base_url="http://x/v1")
    with FakeServer(prefer_marked) as server:
        judge_pairwise(a, b, cfg.model_copy(update={"base_url": server.url}), tmp_path / "j")
    out = tmp_path / "annotations.json"
    assert main(["export", "alpaca-eval-annotations", str(tmp_path / "j"), "--out", str(out)]) == 0
    rows = json.loads(out.read_text())
    # output_1 is the baseline (B), output_2 the model (A); 2 = model better, 1.5 = tie.
    assert [r["preference"] for r in rows] == [2.0, 2.0, 1.0, 1.5]
    assert rows[0]["output_1"] == "weak b0" and rows[0]["output_2"] == "GOOD a0"
    assert rows[0]["generator_1"] == "model-b" and rows[0]["generator_2"] == "model-a"
    assert rows[0]["instruction"] == "Question 0: how do I do thing 0?"
    # AlpacaEval's win rate over these annotations (mean of preference - 1) is limakit's.
    alpaca_win = 100 * sum(r["preference"] - 1 for r in rows) / len(rows)
    ours = lc_win_rate(read_verdicts(tmp_path / "j"), resamples=10)["win_rate"]
    assert abs(alpaca_win - ours) < 1e-6
    flipped = tmp_path / "flipped.json"
    main(
        [
            "export",
            "alpaca-eval-annotations",
            str(tmp_path / "j" / "verdicts.jsonl"),
            "--baseline",
            "a",
            "--out",
            str(flipped),
        ]
    )
    assert [r["preference"] for r in json.loads(flipped.read_text())] == [1.0, 1.0, 2.0, 1.5]


def test_arena_hard_answers(tmp_path):
    text = "# Title\n\n- one\n- two\n1. first\n**bold** and __also__\n```\n# not a header\n```"
    path = tmp_path / "a.jsonl"
    write_jsonl(path, [answer(0, text, "lima", new_tokens=42), answer(1, "plain", "lima")])
    out = tmp_path / "lima.jsonl"
    assert main(["export", "arena-hard", str(path), "--out", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["uid"] for r in rows] == ["p0", "p1"]
    r = rows[0]
    assert r["model"] == "lima" and isinstance(r["ans_id"], str) and r["tstamp"] > 0
    assert r["messages"] == [
        {"role": "user", "content": "Question 0: how do I do thing 0?"},
        {"role": "assistant", "content": {"answer": text}},
    ]
    meta = r["metadata"]
    assert meta["token_len"] == 42
    assert meta["header_count"]["h1"] == 1  # the one inside the code block is not counted
    assert meta["list_count"] == {"ordered": 1, "unordered": 2}
    assert meta["bold_count"] == {"**": 1, "__": 1}
    assert rows[1]["metadata"]["token_len"] == 1  # no token count recorded: words


@pytest.fixture(scope="module")
def judged_once(tmp_path_factory):
    """A real pairwise folder (and its answer files), judged once by a local server."""
    d = tmp_path_factory.mktemp("judged")
    a, b = write_pair(d, A_TEXTS, B_TEXTS)
    cfg = JudgeConfig(backend="openai", model="judge", base_url="http://x/v1")
    with FakeServer(prefer_marked) as server:
        judge_pairwise(a, b, cfg.model_copy(update={"base_url": server.url}), d / "j")
    return d


@pytest.fixture
def judged(tmp_path, judged_once):
    """A copy of the judged folder to damage; its summary names the shared answer files."""
    import shutil

    return Path(shutil.copytree(judged_once / "j", tmp_path / "j"))


def _export(folder, capsys, *extra: str) -> tuple[int, str]:
    out = folder.parent / "annotations.json"
    code = main(["export", "alpaca-eval-annotations", str(folder), "--out", str(out), *extra])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert code == 0 or not out.exists()
    return code, "".join(err.split())  # rich wraps long error lines


@pytest.mark.parametrize(
    "summary, says",
    [
        ([1, 2], "{s}: a summary must be a JSON object, got a list"),
        ({"protocol": "pairwise"}, "{s}: field 'a' must be an object with the 'path' of"),
        (
            {"protocol": "pairwise", "a": {"path": "x.jsonl"}, "b": ["y.jsonl"]},
            "{s}: field 'b' must be an object with the 'path' of",
        ),
        ({"protocol": "rate"}, "{d}: not a pairwise judging (protocol rate)"),
    ],
)
def test_an_odd_summary_is_a_clear_error(judged, capsys, summary, says):
    folder = judged
    (folder / "summary.json").write_text(json.dumps(summary))
    code, err = _export(folder, capsys)
    assert code == 2
    assert "".join(says.format(s=folder / "summary.json", d=folder).split()) in err


def test_answers_given_by_hand_stand_in_for_the_summarys(judged, judged_once, capsys):
    folder = judged
    (folder / "summary.json").write_text(json.dumps({"protocol": "pairwise"}))
    a, b = judged_once / "a.jsonl", judged_once / "b.jsonl"
    assert _export(folder, capsys, "--a", str(a), "--b", str(b))[0] == 0
    rows = json.loads((folder.parent / "annotations.json").read_text())
    assert [r["preference"] for r in rows] == [2.0, 2.0, 1.0, 1.5]


RULES = {
    "sample": "'sample' must be a whole number, 0 or more (the answer's sample), got ",
    "id": "'id' must be the prompt's id, a string, got ",
    "result": "'result' must be one of win, lose, tie, invalid; got ",
}


@pytest.mark.parametrize(
    "field, value, shown",
    [
        ("sample", "x", '"x"'),
        ("sample", [1], "[1]"),
        ("sample", 0.7, "0.7"),  # not taken as sample 0
        ("sample", -1, "-1"),
        ("sample", True, "true"),
        ("id", ["p1"], '["p1"]'),
        ("result", ["win"], '["win"]'),
        ("result", "wins", '"wins"'),
    ],
)
def test_an_odd_verdict_is_named_by_file_line_and_rule(judged, capsys, field, value, shown):
    folder = judged
    path = folder / "verdicts.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    rows[1][field] = value
    write_jsonl(path, rows)
    code, err = _export(folder, capsys)
    assert code == 2
    assert "".join(f"{path}:2: {RULES[field]}{shown}".split()) in err


def test_a_verdict_without_a_sample_is_sample_0(judged, capsys):
    folder = judged
    path = folder / "verdicts.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    for row in rows:
        del row["sample"]
    rows[1]["sample"] = None
    write_jsonl(path, rows)
    assert _export(folder, capsys)[0] == 0
    assert len(json.loads((folder.parent / "annotations.json").read_text())) == 4
