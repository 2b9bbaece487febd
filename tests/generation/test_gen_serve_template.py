"""`lima serve --template auto|own|limakit`: the flag, meaning and default of `lima generate`, so a
chat request is rendered exactly as generate renders the same conversation."""

from __future__ import annotations

import json

import httpx
import pytest
import uvicorn

from limakit.cli import main
from limakit.generation import engine as engine_mod
from limakit.generation.chat_format import own_prompt_ids
from limakit.records.example import Message

from .serving import serving_app

QUESTION = "What is the capital of France?"


@pytest.mark.parametrize("template", [None, "auto", "own", "limakit"])
def test_serve_renders_a_chat_prompt_as_generate_does(
    chatml_dir, raw_tokenizer, tmp_path, monkeypatch, template
):
    given: list[list[int]] = []  # the prompt ids each engine was given
    real_add = engine_mod.Engine.add

    def add(self, req):
        given.append(list(req.prompt_ids))
        return real_add(self, req)

    monkeypatch.setattr(engine_mod.Engine, "add", add)
    common = ["--model", chatml_dir, "--device", "cpu", "--dtype", "float32"]
    common += ["--max-new-tokens", "2", *([] if template is None else ["--template", template])]
    src = tmp_path / "prompts.jsonl"
    src.write_text(json.dumps({"id": "a", "messages": [{"role": "user", "content": QUESTION}]}))
    out = tmp_path / "answers.jsonl"
    assert main(["generate", "--prompts", str(src), "--out", str(out), *common]) == 0
    (generated,) = given

    apps = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **_kw: apps.append(app))
    assert main(["serve", *common]) == 0
    with serving_app(apps[0]) as (url, _):
        body = {"model": chatml_dir, "messages": [{"role": "user", "content": QUESTION}]}
        r = httpx.post(url + "/chat/completions", json={**body, "max_tokens": 2}, timeout=60)
    assert r.status_code == 200, r.text
    served = given[1]
    assert served == generated
    # The default is generate's (auto): the model's own ChatML for a model that has one.
    own = own_prompt_ids([Message("user", QUESTION)], raw_tokenizer)
    assert (served == own) is (template != "limakit")
