"""Judge-free checks and IFBench scoring."""

from __future__ import annotations

import json

from limakit.cli import main
from limakit.core.files import write_jsonl
from limakit.evaluation import auto_checks, export_ifbench_prompts, score_ifbench
from limakit.evaluation.checks import repetition
from limakit.evaluation.ifbench import data_path, load_ifbench
from tests.evaluation.helpers import answer


def test_auto_checks_eot_length_repetition(tmp_path):
    loop = "the cat sat on the mat " * 20
    rows = [
        answer(0, "A short clean answer that stops.", "m", stop="eot", new_tokens=8),
        answer(1, loop, "m", stop="length", new_tokens=120),
        answer(2, "Another fine answer, done here.", "m", stop="eot"),
        answer(3, "No stop recorded.", "m"),
    ]
    rows[3]["meta"].pop("stop")
    path = tmp_path / "answers.jsonl"
    write_jsonl(path, rows)
    c = auto_checks(path)
    assert c["n"] == 4 and c["eot_share"] == 0.5
    assert c["stop"] == {"eot": 2, "length": 1, "unknown": 1}
    assert c["repetitive_share"] == 0.25 and c["new_tokens"]["mean"] == 64
    assert c["length_chars"]["max"] == len(loop)
    assert repetition(loop) > 0.9 and repetition("one two three four five") == 0.0


def test_ifbench_export_and_score(tmp_path):
    prompts = tmp_path / "ifbench.jsonl"
    assert export_ifbench_prompts(prompts) == 294 == len(load_ifbench())
    rows = [json.loads(x) for x in prompts.read_text().splitlines()]
    assert rows[0]["id"].startswith("ifbench-") and rows[0]["messages"][-1]["role"] == "user"
    # The package ships one real model's responses: use them as answers, plus one stray id.
    sample = [
        json.loads(x) for x in (data_path().parent / "sample_output.jsonl").read_text().splitlines()
    ]
    by_prompt = {s["prompt"]: s["response"] for s in sample}
    answers = []
    for r in rows:
        text = by_prompt.get(r["messages"][0]["content"]) or "no answer"
        answers.append({**r, "messages": r["messages"] + [{"role": "assistant", "content": text}]})
    answers.append(answer(999, "stray", "m"))
    path = tmp_path / "answers.jsonl"
    write_jsonl(path, answers)
    s = score_ifbench(path)
    assert s["matched_prompts"] == 294 and s["missing_prompts"] == 0 and s["unmatched_answers"] == 1
    assert 0 < s["instruction_strict"] <= s["instruction_loose"] < 1
    # Checkers that need nltk data are counted apart, never scored as misses.
    if s["not_scorable_offline"]:
        assert sum(s["not_scorable_instructions"].values()) == s["not_scorable_offline"]
    assert s["instructions_scored"] + s["not_scorable_offline"] == sum(
        len(r["instruction_id_list"]) for r in load_ifbench()
    )


def test_ifbench_keyword_checker_scores_a_known_case(tmp_path):
    row = next(r for r in load_ifbench() if r["instruction_id_list"] == ["count:keywords_multiple"])
    kw = row["kwargs"][0]
    good = " ".join(
        [kw["keyword1"]]
        + [kw["keyword2"]] * 2
        + [kw["keyword3"]] * 3
        + [kw["keyword4"]] * 5
        + [kw["keyword5"]] * 7
    )
    base = {"id": f"ifbench-{row['key']}", "source": "ifbench", "meta": {}}
    write_jsonl(tmp_path / "good.jsonl", [{**base, "messages": [
        {"role": "user", "content": row["prompt"]}, {"role": "assistant", "content": good}]}])  # fmt: skip
    write_jsonl(tmp_path / "bad.jsonl", [{**base, "messages": [
        {"role": "user", "content": row["prompt"]}, {"role": "assistant", "content": "nothing"}]}])  # fmt: skip
    assert score_ifbench(tmp_path / "good.jsonl")["prompt_strict"] == 1.0
    assert score_ifbench(tmp_path / "bad.jsonl")["prompt_strict"] == 0.0


def test_cli_check_and_ifbench(tmp_path, capsys):
    path = tmp_path / "answers.jsonl"
    write_jsonl(path, [answer(0, "Fine.", "m")])
    assert main(["check", str(path), "--out", str(tmp_path / "c.json")]) == 0
    assert json.loads((tmp_path / "c.json").read_text())["eot_share"] == 1.0
    assert main(["ifbench", "export", "--out", str(tmp_path / "p.jsonl")]) == 0
    assert "294" in capsys.readouterr().out
