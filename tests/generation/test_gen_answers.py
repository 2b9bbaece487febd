"""generate_answers and `lima generate`: output format, seeds, samples, resume after a kill."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from limakit.core.errors import LimaError
from limakit.generation import DecodeConfig, generate_answers
from limakit.generation import engine as engine_mod
from limakit.records.example import Example, read_examples, write_examples

from .conftest import boost_eot, prompts, sharpen

CFG = DecodeConfig(max_new_tokens=8)


def test_answers_are_examples_with_meta(tiny, tmp_path):
    model, tok = tiny.pair
    boost_eot(model, tok, 6.0)
    ps = prompts(4)
    out = tmp_path / "answers.jsonl"
    answers = generate_answers(tiny, ps, samples=2, config=CFG, out=out, model_name="tiny")
    assert [(a.id, a.meta["sample"]) for a in answers] == [(p.id, k) for p in ps for k in (0, 1)]
    on_disk = list(read_examples(out, require_answer=True))
    assert sorted((a.id, a.meta["sample"]) for a in on_disk) == sorted(
        (a.id, a.meta["sample"]) for a in answers
    )
    for a, p in zip(answers, [p for p in ps for _ in (0, 1)]):
        assert a.messages[:-1] == p.messages and a.messages[-1].role == "assistant"
        assert a.meta["k"] == p.meta["k"]  # the prompt's own meta is kept
        assert a.meta["model"] == "tiny" and a.meta["stop"] in ("eot", "length")
        assert 0 <= a.meta["new_tokens"] <= 8
        assert a.meta["stop"] == "eot" or a.meta["new_tokens"] == 8
        assert a.meta["decoding"]["top_p"] == 0.9 and a.meta["decoding"]["temperature"] == 0.7
        assert a.meta["decoding"]["repetition_penalty"] == 1.2
        assert "<|eot|>" not in a.messages[-1].content
    assert {a.meta["stop"] for a in answers} == {"eot", "length"}  # both stops were exercised


def test_same_seed_same_text_and_samples_differ(tiny):
    model, tok = tiny.pair
    ps = prompts(2)
    a = generate_answers(tiny, ps, samples=3, seed=5, config=CFG, progress=False)
    b = generate_answers(tiny, ps, samples=3, seed=5, config=CFG, progress=False)
    c = generate_answers(tiny, ps[:1], samples=3, seed=6, config=CFG, progress=False)
    text = [x.messages[-1].content for x in a]
    assert text == [x.messages[-1].content for x in b]
    assert text[:3] != [x.messages[-1].content for x in c]
    assert len(set(text[:3])) == 3 and len(set(text[3:])) == 3  # K samples of a prompt differ


class _Killed(Exception):
    pass


def test_resume_after_a_killed_run_answers_only_the_rest(tiny, tmp_path, monkeypatch):
    model, tok = tiny.pair
    sharpen(model)  # batch composition changes rounding: no near-ties for it to flip
    ps = prompts(5)
    full = generate_answers(tiny, ps, samples=2, seed=1, config=CFG, progress=False)
    out = tmp_path / "answers.jsonl"

    # First run dies after 4 answers, in the middle of writing the 5th line.
    import limakit.generation.batch as batch_mod

    written = []

    def dying_append(f, row):
        if len(written) == 4:
            f.write(json.dumps(row)[:30])  # a partial line, as a kill mid-write leaves
            f.flush()
            raise _Killed
        written.append(row)
        f.write(json.dumps(row) + "\n")
        f.flush()

    monkeypatch.setattr(batch_mod, "append_jsonl", dying_append)
    with pytest.raises(_Killed):
        generate_answers(tiny, ps, samples=2, seed=1, config=CFG, out=out, progress=False)
    monkeypatch.undo()
    assert len(out.read_text().splitlines()) == 5  # 4 answers + the cut-off line

    added = []
    monkeypatch.setattr(
        engine_mod.Engine, "add", lambda self, req: added.append(req.tag) or real_add(self, req)
    )
    again = generate_answers(tiny, ps, samples=2, seed=1, config=CFG, out=out, progress=False)
    assert len(added) == 10 - 4  # only the unanswered (id, sample) pairs were generated
    done_first = {(r["id"], r["meta"]["sample"]) for r in written}
    assert not done_first & {(p.id, k) for p, k in added}
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert sorted((r["id"], r["meta"]["sample"]) for r in lines) == sorted(
        (p.id, k) for p in ps for k in (0, 1)
    )
    # Resumed answers equal an uninterrupted run's: seeds are per (id, sample).
    assert [a.messages[-1].content for a in again] == [a.messages[-1].content for a in full]


real_add = engine_mod.Engine.add


def test_bad_prompts_are_rejected(tiny):
    ps = prompts(2)
    ps[1].id = ps[0].id
    with pytest.raises(LimaError, match="duplicate id"):
        generate_answers(tiny, ps, config=CFG, progress=False)


def test_cli_generate_and_rerun(tiny_model_dir, tmp_path):
    src = tmp_path / "prompts.jsonl"
    write_examples(src, prompts(3))
    out = tmp_path / "out.jsonl"
    cmd = [
        sys.executable,
        "-m",
        "limakit",
        "generate",
        "--model",
        tiny_model_dir,
        "--prompts",
        str(src),
        "--out",
        str(out),
        "--samples",
        "2",
        "--seed",
        "3",
        "--max-new-tokens",
        "6",
        "--top-p",
        "0.95",
        "--dtype",
        "float32",
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    rows = [Example.from_dict(json.loads(x)) for x in out.read_text().splitlines()]
    assert len(rows) == 6 and all(x.meta["decoding"]["top_p"] == 0.95 for x in rows)
    before = out.read_text()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0 and out.read_text() == before  # nothing left to do
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        '{"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]}\n'
    )
    r = subprocess.run([*cmd[:7], str(bad), *cmd[8:]], capture_output=True, text=True, env=env)
    assert r.returncode == 2 and "bad.jsonl:1" in r.stderr


def test_cli_resume_after_sigkill(tiny_model_dir, tmp_path):
    """A real `lima generate` killed mid-run; the rerun keeps every finished line and adds the rest."""
    import signal

    from limakit.cli import main

    src = tmp_path / "prompts.jsonl"
    write_examples(src, prompts(5))
    out = tmp_path / "out.jsonl"
    cmd = [
        sys.executable,
        "-m",
        "limakit",
        "generate",
        "--model",
        tiny_model_dir,
        "--prompts",
        str(src),
        "--out",
        str(out),
        "--max-new-tokens",
        "4",
        "--batch-size",
        "1",
        "--dtype",
        "float32",
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    # SIGKILL right after the 3rd answer is flushed: deterministic, whatever the machine's speed.
    killed = subprocess.run(
        cmd, env={**env, "LIMAKIT_CRASH_AT": "generate:answers:3"}, capture_output=True, timeout=300
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()[-2000:]
    kept = out.read_text()
    assert kept.count("\n") == 3 and kept.endswith("\n")  # every flushed answer survives
    assert main(cmd[3:]) == 0  # the rerun: `lima generate` again, in this process
    after = out.read_text()
    assert after.startswith(kept)
    keys = [(x["id"], x["meta"]["sample"]) for x in map(json.loads, after.splitlines())]
    assert len(keys) == len(set(keys)) == 5
