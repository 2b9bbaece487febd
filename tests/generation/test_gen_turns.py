"""Prompts with several user turns: answered turn by turn, batched across prompts, resumable."""

from __future__ import annotations

import json

import pytest

from limakit.cli import main
from limakit.core.errors import LimaError
from limakit.generation import DecodeConfig, generate_answers
from limakit.generation import batch as batch_mod
from limakit.generation import engine as engine_mod
from limakit.generation.turns import answered_from_dict, read_prompts
from limakit.records.example import Example, Message, read_examples
from limakit.records.template import render_prompt

from .conftest import boost_eot, prompts, sharpen

CFG = DecodeConfig(max_new_tokens=6)


def _write(path, rows) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def _msgs(*pairs):
    return [{"role": r, "content": c} for r, c in pairs]


def test_prompt_files_take_user_turns_in_a_row_and_fastchat_questions(tmp_path):
    src = _write(
        tmp_path / "p.jsonl",
        [
            {"id": "two", "messages": _msgs(("user", "First?"), ("user", "Second?"))},
            {
                "question_id": 81,
                "category": "writing",
                "turns": ["Write a poem.", "Now shorter."],
                "reference": ["A poem."],
            },
            {"question_id": "q2", "turns": ["Only one."]},
        ],
    )
    got = list(read_prompts(src))
    assert [[m.role for m in p.messages] for p in got] == [["user", "user"]] * 2 + [["user"]]
    assert got[1].id == "81" and got[1].meta == {"category": "writing", "reference": ["A poem."]}
    assert [m.content for m in got[1].messages] == ["Write a poem.", "Now shorter."]
    assert got[2].id == "q2"


@pytest.mark.parametrize(
    "messages, why",
    [
        (_msgs(("assistant", "a"), ("user", "u")), "message 1: the conversation must start"),
        (_msgs(("user", "u"), ("assistant", "a"), ("assistant", "b"), ("user", "v")), "message 3"),
        (_msgs(("user", "u"), ("system", "s"), ("user", "v")), "message 2: a system message"),
        (_msgs(("user", "u"), ("assistant", "a")), "the last message must be the user's"),
        (_msgs(("user", "u"), ("user", " ")), "message 2: content is empty"),
    ],
)
def test_other_malformed_prompts_are_refused_with_file_and_line(tmp_path, messages, why):
    ok = {"messages": _msgs(("user", "fine"))}
    src = _write(tmp_path / "p.jsonl", [ok, {"messages": messages}])
    with pytest.raises(LimaError, match=rf"p\.jsonl:2: {why}"):
        list(read_prompts(src))


def test_malformed_fastchat_questions_are_refused(tmp_path):
    for row, why in [
        ({"question_id": 1, "turns": ["a"], "x": 1}, r"unknown field\(s\) \['x'\]"),
        ({"question_id": 1, "turns": []}, "'turns' must be a non-empty list"),
        ({"question_id": 1, "turns": ["a", ""]}, "turn 2 must be a non-empty string"),
    ]:
        src = _write(tmp_path / "q.jsonl", [row])
        with pytest.raises(LimaError, match=rf"q\.jsonl:1: {why}"):
            list(read_prompts(src))


def _recording(monkeypatch):
    """Record each batched pass (the requests the engine got between two drives)."""
    passes: list[list] = []
    real_drive = batch_mod._drive

    def drive(engine, reqs, progress, label="answers"):
        turn = len(passes)
        passes.append([(r.tag[0].id, turn, list(r.prompt_ids)) for r in reqs])
        return real_drive(engine, reqs, progress, label)

    monkeypatch.setattr(batch_mod, "_drive", drive)
    return passes


def _multi_prompts() -> list[Example]:
    return [
        Example([Message("user", "Name a colour."), Message("user", "And another?")], id="m0"),
        Example(
            [
                Message("system", "Be brief."),
                Message("user", "Hi"),
                Message("assistant", "Hello there!"),  # given: kept as context, not regenerated
                Message("user", "Count to three."),
                Message("user", "Now backwards."),
                Message("user", "Thanks."),
            ],
            id="m1",
            meta={"k": 1},
        ),
        *prompts(2),  # one-turn prompts in the same run
    ]


def test_turns_are_answered_in_order_each_answer_fed_back_batched_across_prompts(tiny, monkeypatch):
    model, tok = tiny.pair
    boost_eot(model, tok, 5.0)
    sharpen(model)
    passes = _recording(monkeypatch)
    ps = _multi_prompts()
    got = generate_answers(tiny, ps, samples=2, seed=3, config=CFG, progress=False)
    # All first turns in one pass, then all second turns, then m1's third.
    assert [sorted({(i, t) for i, t, _ in p}) for p in passes] == [
        [("m0", 0), ("m1", 0), ("p0", 0), ("p1", 0)],
        [("m0", 1), ("m1", 1)],
        [("m1", 2)],
    ]
    assert [len(p) for p in passes] == [8, 4, 2]
    by = {(a.id, a.meta["sample"]): a for a in got}
    m0 = by[("m0", 1)]
    assert [m.role for m in m0.messages] == ["user", "assistant"] * 2
    # The second turn's prompt holds the model's own first answer.
    second = [ids for i, t, ids in passes[1] if i == "m0"]
    assert render_prompt(m0.messages[:3], tok) in second
    assert [t["message"] for t in m0.meta["turns"]] == [1, 3]
    assert m0.meta["stop"] == m0.meta["turns"][-1]["stop"]
    assert m0.meta["new_tokens"] == m0.meta["turns"][-1]["new_tokens"]
    m1 = by[("m1", 0)]
    assert [m.role for m in m1.messages] == ["system", *["user", "assistant"] * 4]
    assert m1.messages[2].content == "Hello there!" and m1.meta["k"] == 1
    assert [t["message"] for t in m1.meta["turns"]] == [4, 6, 8]
    assert m1.answer == m1.messages[8].content
    # One-turn prompts keep the single-turn fields only, and the same text as a run without
    # the multi-turn prompts (their random streams did not move).
    alone = generate_answers(tiny, ps[2:], samples=2, seed=3, config=CFG, progress=False)
    for a in alone:
        b = by[(a.id, a.meta["sample"])]
        assert "turns" not in b.meta and b.messages == a.messages
    # Every answered conversation reads back as an answer (an answer may be empty).
    for a in got:
        assert answered_from_dict(a.to_dict()).to_dict() == a.to_dict()


def test_a_rerun_skips_finished_conversations(tiny, tmp_path, monkeypatch):
    model, tok = tiny.pair
    boost_eot(model, tok, 5.0)
    ps = _multi_prompts()
    out = tmp_path / "answers.jsonl"
    first = generate_answers(tiny, ps[:1], seed=1, config=CFG, out=out, progress=False)
    passes = _recording(monkeypatch)
    again = generate_answers(tiny, ps, seed=1, config=CFG, out=out, progress=False)
    assert all(i != "m0" for p in passes for i, _, _ in p)  # m0 was done: not asked again
    assert again[0].to_dict() == first[0].to_dict()
    rows = list(read_examples(out, require_answer=True))
    assert sorted(r.id for r in rows) == sorted(p.id for p in ps)


def test_an_empty_answer_in_a_middle_turn_is_kept_and_resumed(tiny, tmp_path):
    model, tok = tiny.pair
    boost_eot(model, tok, 60.0)  # every answer ends at once: empty
    ps = _multi_prompts()[:1]
    out = tmp_path / "answers.jsonl"
    got = generate_answers(tiny, ps, config=CFG, out=out, progress=False)
    assert [m.content for m in got[0].messages] == ["Name a colour.", "", "And another?", ""]
    assert [t["stop"] for t in got[0].meta["turns"]] == ["eot", "eot"]
    before = out.read_text()
    again = generate_answers(tiny, ps, config=CFG, out=out, progress=False)
    assert out.read_text() == before and again[0].to_dict() == got[0].to_dict()


def test_cli_answers_a_fastchat_question_file(tiny_model_dir, tmp_path, monkeypatch):
    calls = []
    real_add = engine_mod.Engine.add
    monkeypatch.setattr(
        engine_mod.Engine, "add", lambda self, r: calls.append(r.tag[0].id) or real_add(self, r)
    )
    src = _write(
        tmp_path / "question.jsonl",
        [
            {"question_id": 81, "category": "writing", "turns": ["Write a poem.", "Shorter."]},
            {"question_id": 82, "category": "math", "turns": ["1+1?"], "reference": ["2"]},
        ],
    )
    out = tmp_path / "answers.jsonl"
    args = ["generate", "--model", tiny_model_dir, "--prompts", src, "--out", str(out)]
    args += ["--max-new-tokens", "4", "--dtype", "float32", "--device", "cpu"]
    assert main(args) == 0
    rows = {r.id: r for r in read_examples(out, require_answer=True)}
    assert set(rows) == {"81", "82"} and sorted(calls) == ["81", "81", "82"]
    assert rows["81"].meta["category"] == "writing" and len(rows["81"].meta["turns"]) == 2
    assert [m.role for m in rows["81"].messages] == ["user", "assistant"] * 2
    assert rows["82"].meta["reference"] == ["2"] and "turns" not in rows["82"].meta
    assert rows["82"].meta["template"] == "limakit"
    before = out.read_text()
    assert main(args) == 0 and out.read_text() == before  # resumed: nothing left to do


def test_generate_reads_a_packaged_prompts_file_by_name(tmp_path, tiny_model_dir, capsys):
    """`--prompts packaged:NAME` is a file shipped in limakit (the safety prompts, for one): the
    answers keep each prompt's meta."""
    out = tmp_path / "safety.jsonl"
    args = ["generate", "--model", tiny_model_dir, "--prompts", "packaged:safety/prompts.jsonl",
            "--out", str(out), "--max-new-tokens", "1", "--dtype", "float32", "--device", "cpu"]  # fmt: skip
    assert main(args) == 0
    rows = list(read_examples(out, require_answer=None))
    assert len(rows) == 72 and {r.meta["safety"] for r in rows} == {"sensitive", "benign"}
    missing = ["generate", "--model", tiny_model_dir, "--prompts", "packaged:nope.jsonl",
               "--out", str(tmp_path / "x.jsonl")]  # fmt: skip
    assert (
        main(missing) == 2
        and "packaged:nope.jsonl: no such packaged file" in capsys.readouterr().err
    )
