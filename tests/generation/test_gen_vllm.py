"""The vLLM backend: the requests it builds (with a stand-in for vLLM) and, where vLLM exists, a run."""

from __future__ import annotations

import importlib.util
import sys
import types

import pytest

from limakit.generation import DecodeConfig, generate_answers
from limakit.generation.batch import model_for_answers
from limakit.models import load_tokenizer
from limakit.records.template import Template, render_prompt

from .conftest import prompts


class _Params:
    def __init__(self, **kw):
        self.__dict__.update(kw)


def _stand_in(calls: dict, eot: int) -> types.ModuleType:
    """A module named vllm whose LLM records its inputs and answers like vLLM does."""

    class LLM:
        def __init__(self, model, seed=0, **kw):
            calls["init"] = {"model": model, "seed": seed, **kw}

        def generate(self, prompts, params):
            calls["prompts"], calls["params"] = prompts, params
            outs = []
            for i in range(len(params)):
                ids = [11, 12, 13][: 1 + i % 3]
                stopped = i % 2 == 0  # alternate: stopped at the EOT, or at max_tokens
                c = types.SimpleNamespace(
                    text=f" answer {i} ",
                    token_ids=ids,
                    finish_reason="stop" if stopped else "length",
                )
                outs.append(types.SimpleNamespace(outputs=[c]))
            return outs

    module = types.ModuleType("vllm")
    module.LLM, module.SamplingParams = LLM, _Params
    return module


def test_vllm_requests_follow_lima_decoding_and_answers_match_the_engine_shape(
    tiny_model_dir, tiny, monkeypatch, tmp_path
):
    tok = load_tokenizer(tiny_model_dir)
    eot = tok.convert_tokens_to_ids(Template().eot)
    calls: dict = {}
    monkeypatch.setitem(sys.modules, "vllm", _stand_in(calls, eot))
    ps = prompts(3)
    cfg = DecodeConfig(max_new_tokens=7)
    out = tmp_path / "answers.jsonl"
    vllm = model_for_answers(tiny_model_dir, backend="vllm")  # the tokenizer and template only
    got = generate_answers(vllm, ps, samples=2, seed=4, config=cfg, out=out, backend="vllm",
                           model_name="m")  # fmt: skip
    assert calls["init"]["model"] == tiny_model_dir and calls["init"]["seed"] == 4
    pairs = [(p, k) for p in ps for k in (0, 1)]
    assert [x["prompt_token_ids"] for x in calls["prompts"]] == [
        render_prompt(p.messages, tok) for p, _ in pairs
    ]
    for prm in calls["params"]:
        assert (prm.temperature, prm.top_p, prm.repetition_penalty) == (0.7, 0.9, 1.2)
        assert prm.max_tokens == 7 and prm.stop_token_ids == [eot]
    seeds = [prm.seed for prm in calls["params"]]
    assert len(set(seeds)) == len(seeds)  # each (prompt, sample) has its own stream
    # Same Example shape as the built-in engine's answers.
    engine = generate_answers(tiny, ps, samples=2, seed=4, config=cfg, model_name="m")
    assert [(a.id, a.meta["sample"]) for a in got] == [(a.id, a.meta["sample"]) for a in engine]
    for a, b in zip(got, engine):
        assert set(a.meta) - {"decoding"} == set(b.meta) - {"decoding"}
        assert a.messages[:-1] == b.messages[:-1] and a.messages[-1].role == "assistant"
        assert a.meta["decoding"]["backend"] == "vllm"
    assert [a.meta["stop"] for a in got] == ["eot", "length"] * 3
    assert [a.messages[-1].content for a in got][:2] == ["answer 0", "answer 1"]
    assert len(out.read_text().splitlines()) == 6  # written like the engine's, resumable
    calls.clear()
    generate_answers(vllm, ps, samples=2, seed=4, config=cfg, out=out, backend="vllm",
                     model_name="m")  # fmt: skip
    assert calls == {}  # a rerun finds every answer done and starts no vLLM engine


@pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vLLM is not installed")
def test_real_vllm_stops_at_the_eot(tiny_model_dir):
    vllm = model_for_answers(tiny_model_dir, backend="vllm")
    got = generate_answers(vllm, prompts(2), config=DecodeConfig(max_new_tokens=8), backend="vllm")
    assert all(a.meta["new_tokens"] <= 8 and "<|eot|>" not in a.messages[-1].content for a in got)


def test_serve_with_vllm_runs_its_openai_server_with_lima_decoding(tiny_model_dir, monkeypatch):
    import json as _json

    from limakit.cli import main

    monkeypatch.setitem(sys.modules, "vllm", types.ModuleType("vllm"))
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: object())
    ran = {}

    def fake_exec(path, argv):
        ran["argv"] = argv

    monkeypatch.setattr("os.execv", fake_exec)
    rc = main(["serve", "--model", tiny_model_dir, "--backend", "vllm", "--port", "8123",
               "--api-key", "k", "--top-p", "0.95", "--model-name", "lima-7b"])  # fmt: skip
    argv = ran["argv"]
    assert rc == 0 and argv[1:3] == ["-m", "vllm.entrypoints.openai.api_server"]
    opts = dict(zip(argv[3::2], argv[4::2]))
    assert opts["--model"] == tiny_model_dir and opts["--port"] == "8123"
    assert opts["--served-model-name"] == "lima-7b" and opts["--api-key"] == "k"
    defaults = _json.loads(opts["--override-generation-config"])
    assert defaults == {"temperature": 0.7, "top_p": 0.95, "repetition_penalty": 1.2,
                        "max_new_tokens": 2048}  # fmt: skip


def test_serve_with_vllm_missing_is_one_clear_error(tiny_model_dir, capsys):
    from limakit.cli import main

    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vLLM is installed here")
    assert main(["serve", "--model", tiny_model_dir, "--backend", "vllm"]) == 2
    assert "needs vLLM installed" in capsys.readouterr().err
