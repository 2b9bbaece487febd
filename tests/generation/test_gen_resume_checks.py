"""`generate` refuses to mix settings in one answers file, checks --out early, and top_p 0."""

from __future__ import annotations

import json

import pytest

from limakit.cli import main
from limakit.core.errors import LimaError
from limakit.generation import DecodeConfig, generate_answers
from limakit.records.example import write_examples

from .conftest import prompts

CFG = DecodeConfig(max_new_tokens=4)


def _rows(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_resume_with_other_settings_is_refused_naming_the_difference(tiny, tmp_path):
    out = tmp_path / "answers.jsonl"
    ps = prompts(2)
    kw = dict(config=CFG, out=out, progress=False, model_name="tiny")
    generate_answers(tiny, ps, seed=1, **kw)
    with pytest.raises(LimaError, match=r"seed 1 there, 2 now") as e:
        generate_answers(tiny, ps, samples=2, seed=2, **kw)
    assert str(out) in str(e.value) and "--force" in str(e.value)
    kw["config"] = DecodeConfig(max_new_tokens=4, top_p=0.95)
    with pytest.raises(LimaError, match=r"top_p 0.9 there, 0.95 now"):
        generate_answers(tiny, ps, samples=2, seed=1, **kw)
    with pytest.raises(LimaError, match=r"model 'tiny' there, 'other' now"):
        generate_answers(
            tiny, ps, samples=2, seed=1, **{**kw, "config": CFG, "model_name": "other"}
        )
    assert len(_rows(out)) == 2  # nothing was added by the refused runs
    # More samples with the same settings is an ordinary resume.
    generate_answers(tiny, ps, samples=2, seed=1, **{**kw, "config": CFG})
    assert len(_rows(out)) == 4
    # --force mixes them, and every line still says how it was made.
    generate_answers(tiny, ps, samples=3, seed=2, force=True, **{**kw, "config": CFG})
    seeds = sorted(r["meta"]["decoding"]["seed"] for r in _rows(out))
    assert seeds == [1, 1, 1, 1, 2, 2]


def test_resume_in_another_dtype_is_refused(tiny, tmp_path):
    import torch

    from limakit.models import LoadedModel

    model, tok = tiny.pair
    out = tmp_path / "answers.jsonl"
    ps = prompts(2)
    generate_answers(tiny, ps, config=CFG, out=out, progress=False, model_name="tiny")
    model.to(torch.bfloat16)
    with pytest.raises(LimaError, match=r"dtype 'float32' there, 'bfloat16' now"):
        generate_answers(
            LoadedModel.of(model, tok), ps, samples=2, config=CFG, out=out, progress=False,
            model_name="tiny",
        )  # fmt: skip


def test_a_file_without_recorded_settings_is_not_resumed_silently(tiny, tmp_path):
    out = tmp_path / "answers.jsonl"
    row = {
        "id": "p0",
        "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}],
        "meta": {"sample": 0},
    }
    out.write_text(json.dumps(row) + "\n")
    with pytest.raises(LimaError, match="1 answers record no decoding settings"):
        generate_answers(tiny, prompts(2), config=CFG, out=out, progress=False)


def _cli(tiny_model_dir, src, out, *extra) -> list[str]:
    return ["generate", "--model", tiny_model_dir, "--prompts", str(src), "--out", str(out),
            "--max-new-tokens", "4", "--dtype", "float32", *extra]  # fmt: skip


def test_cli_refuses_another_seed_unless_forced(tiny_model_dir, tmp_path, capsys):
    src, out = tmp_path / "prompts.jsonl", tmp_path / "out.jsonl"
    write_examples(src, prompts(2))
    assert main(_cli(tiny_model_dir, src, out, "--seed", "3")) == 0
    assert main(_cli(tiny_model_dir, src, out, "--seed", "4", "--samples", "2")) == 2
    assert "seed 3 there, 4 now" in " ".join(capsys.readouterr().err.split())  # rich wraps lines
    assert main(_cli(tiny_model_dir, src, out, "--seed", "4", "--samples", "2", "--force")) == 0
    assert len(_rows(out)) == 4


def test_cli_out_in_a_missing_folder_fails_before_the_model_loads(
    tiny_model_dir, tmp_path, capsys, monkeypatch
):
    import limakit.models

    def no_loading(*args, **kw):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(limakit.models, "load_model_for", no_loading)
    src = tmp_path / "prompts.jsonl"
    write_examples(src, prompts(2))
    out = tmp_path / "missing" / "out.jsonl"
    assert main(_cli(tiny_model_dir, src, out)) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "does not exist" in err and "missing" in err
    assert not out.parent.exists()


def test_cli_top_p_zero_is_greedy(tiny_model_dir, tmp_path):
    src = tmp_path / "prompts.jsonl"
    write_examples(src, prompts(3))
    greedy, nucleus0 = tmp_path / "greedy.jsonl", tmp_path / "top_p0.jsonl"
    assert main(_cli(tiny_model_dir, src, greedy, "--temperature", "0")) == 0
    assert main(_cli(tiny_model_dir, src, nucleus0, "--top-p", "0", "--seed", "9")) == 0
    a, b = _rows(greedy), _rows(nucleus0)
    assert [r["messages"][-1]["content"] for r in a] == [r["messages"][-1]["content"] for r in b]
    assert b[0]["meta"]["decoding"]["temperature"] == 0.0
