"""What real clients (lm-eval, inspect-ai, the openai client) need from `lima serve`: token
log-probabilities, the legacy /v1/completions endpoint, a 400 for every field not honoured, queue
times, and a 400 for text that is not Unicode. Every server test talks to a real local server."""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from operator import itemgetter

import httpx
import openai
import pytest
import torch

from limakit.generation.config import DecodeConfig
from limakit.generation.engine import Engine, Request
from limakit.models import LoadedModel
from limakit.records.template import render_prompt

from .conftest import prompts
from .serving import serving

MSG = [{"role": "user", "content": "Say something about the sea."}]
KEY = {"Authorization": "Bearer sekret"}
TOL = 1e-4  # fp32: a batched, cached decode step against one plain forward pass


@pytest.fixture(scope="module")
def loaded(tiny_model_dir):
    from limakit.models import load_model_for

    return load_model_for(tiny_model_dir, "cpu", "float32").pair


@pytest.fixture(scope="module")
def served(loaded):
    model, tok = loaded
    with serving(model, tok, api_key="sekret", config=DecodeConfig(max_new_tokens=8)) as (url, app):
        yield url, app


def post(url: str, path: str, body, **kw) -> httpx.Response:
    return httpx.post(url + path, json=body, headers=KEY, timeout=60, **kw)


def log_softmax(model, ids: list[int]) -> torch.Tensor:
    """The model's own next-token log-probabilities after each prefix of ``ids``: (len, vocab)."""
    with torch.no_grad():
        return torch.log_softmax(model(torch.tensor([ids])).logits[0].float(), dim=-1)


# -- the engine ------------------------------------------------------------------------------


@pytest.mark.parametrize("fixed_shape", [False, True])
def test_engine_logprobs_are_the_models_log_softmax(tiny, fixed_shape):
    """Answer and prompt log-probabilities equal one plain forward pass, in the dynamic decode
    and in the fixed-shape (CUDA graph) decode; rows that do not ask get nothing."""
    model, tok = tiny.pair
    ps = [render_prompt(p.messages, tok) for p in prompts(4)]
    reqs = [
        Request(
            p,
            max_new_tokens=6,
            temperature=0.0,
            repetition_penalty=1.0,
            logprobs=3 if i % 2 == 0 else None,
            prompt_logprobs=2 if i == 0 else None,
        )
        for i, p in enumerate(ps)
    ]
    Engine(LoadedModel.of(model, tok), max_batch=4, cuda_graphs=fixed_shape).run(reqs)
    for i, r in enumerate(reqs):
        if i % 2:
            assert r.token_logprobs == [] and r.prompt_token_logprobs == []
            continue
        assert len(r.token_logprobs) == len(r.output_ids) + (r.finish_reason == "eot")
        ref = log_softmax(model, r.prompt_ids + r.output_ids)
        for t, (token, score) in enumerate(zip(r.output_ids, r.token_logprobs)):
            row = ref[len(r.prompt_ids) - 1 + t]
            assert score.logprob == pytest.approx(row[token].item(), abs=TOL)
            assert [t for t, _ in score.top] == row.topk(3).indices.tolist()
            assert score.top[0][1] == score.logprob  # greedy: the top token, the same value
        if i == 0:
            assert len(r.prompt_token_logprobs) == len(r.prompt_ids) - 1
            for t, score in enumerate(r.prompt_token_logprobs):
                row = ref[t]
                assert score.logprob == pytest.approx(row[r.prompt_ids[t + 1]].item(), abs=TOL)
                assert [t for t, _ in score.top] == row.topk(2).indices.tolist()


def test_engine_scores_a_prompt_without_generating(tiny):
    model, tok = tiny.pair
    ids = render_prompt(prompts(1)[0].messages, tok)
    req = Request(ids, max_new_tokens=0, prompt_logprobs=0)
    Engine(LoadedModel.of(model, tok)).run([req])
    ref = log_softmax(model, ids)
    got = [s.logprob for s in req.prompt_token_logprobs]
    want = [ref[t, ids[t + 1]].item() for t in range(len(ids) - 1)]
    assert got == pytest.approx(want, abs=TOL) and req.output_ids == []
    assert req.finish_reason == "length"


# -- chat completions: logprobs --------------------------------------------------------------


def _greedy_reference(model, tok, messages, steps: int):
    """(token ids, log-softmax rows) of greedy decoding by plain forward passes."""
    from limakit.records.example import Message

    ids = render_prompt([Message(m["role"], m["content"]) for m in messages], tok)
    out, rows = [], []
    for _ in range(steps):
        row = log_softmax(model, ids + out)[-1]
        rows.append(row)
        out.append(int(row.argmax()))
    return out, rows


def test_chat_logprobs_are_reported_in_openai_shape(served, loaded):
    model, tok = loaded
    url, _ = served
    client = openai.OpenAI(base_url=url, api_key="sekret", max_retries=0)
    kw = dict(model="lima-test", messages=MSG, max_tokens=6, temperature=0, seed=3)
    kw["extra_body"] = {"repetition_penalty": 1.0}  # greedy on the raw distribution
    r = client.chat.completions.create(logprobs=True, top_logprobs=3, **kw)
    content = r.choices[0].logprobs.content
    assert len(content) == r.usage.completion_tokens > 0
    ids, rows = _greedy_reference(model, tok, MSG, len(content))
    for entry, token, row in zip(content, ids, rows):
        assert entry.logprob == pytest.approx(row[token].item(), abs=TOL)
        assert len(entry.top_logprobs) == 3
        assert [t.logprob for t in entry.top_logprobs] == sorted(
            (t.logprob for t in entry.top_logprobs), reverse=True
        )
        assert entry.top_logprobs[0].logprob == entry.logprob  # greedy
        top_ids = row.topk(3).indices.tolist()
        assert [t.token for t in entry.top_logprobs] == [tok.decode([i]) for i in top_ids]
    text = b"".join(bytes(e.bytes) for e in content).decode("utf-8", "replace")
    assert text == r.choices[0].message.content
    # Without logprobs: none, and no entries at all.
    plain = client.chat.completions.create(**kw)
    assert plain.choices[0].logprobs is None
    assert plain.choices[0].message.content == r.choices[0].message.content
    # Streamed: the same entries, spread over the chunks.
    chunks = list(client.chat.completions.create(stream=True, logprobs=True, top_logprobs=3, **kw))
    streamed = [e for c in chunks if c.choices and c.choices[0].logprobs for e in c.choices[0].logprobs.content]  # fmt: skip
    assert [(e.token, e.logprob) for e in streamed] == [(e.token, e.logprob) for e in content]
    assert [[t.token for t in e.top_logprobs] for e in streamed] == [
        [t.token for t in e.top_logprobs] for e in content
    ]


def test_chat_logprobs_stop_with_the_answer_at_a_stop_string(served):
    url, _ = served
    base = {"model": "lima-test", "messages": MSG, "max_tokens": 8, "temperature": 1.0,
            "top_p": 1.0, "seed": 7}  # fmt: skip
    full = post(url, "/chat/completions", {**base, "logprobs": True}).json()["choices"][0]
    entries = full["logprobs"]["content"]
    text = full["message"]["content"]
    assert len(entries) >= 4
    # Stop at the text of the third token: the answer ends before it, and so do the entries.
    cut = "".join(e["token"] for e in entries[:2])
    stop = entries[2]["token"]
    assert stop.strip() and not stop.startswith("bytes:") and text.index(stop) == len(cut)
    r = post(url, "/chat/completions", {**base, "logprobs": True, "stop": stop}).json()
    choice = r["choices"][0]
    assert choice["message"]["content"] == text[: text.index(stop)]
    assert [e["token"] for e in choice["logprobs"]["content"]] == [e["token"] for e in entries[:2]]


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
        ({"logprobs": True, "top_logprobs": -1}, "top_logprobs"),
        ({"top_logprobs": 2}, "top_logprobs"),
        ({"logprobs": 1}, "logprobs"),
    ],
)
def test_bad_logprobs_requests_are_400(served, extra, param):
    url, _ = served
    r = post(url, "/chat/completions", {"model": "lima-test", "messages": MSG, **extra})
    assert r.status_code == 400 and r.json()["error"]["param"] == param


# -- /v1/completions -------------------------------------------------------------------------


def parse_logprobs(outputs, ctxlens):
    """lm-eval's ``LocalCompletionsAPI.parse_logprobs``, re-implemented: (loglikelihood of the
    continuation, is it greedy) per choice; the last token (the one generated) is left out."""
    res = []
    outputs = outputs if isinstance(outputs, list) else [outputs]
    for out in outputs:
        for choice, ctxlen in zip(sorted(out["choices"], key=itemgetter("index")), ctxlens):
            assert ctxlen > 0
            token_logprobs = choice["logprobs"]["token_logprobs"][ctxlen:-1]
            top_logprobs = choice["logprobs"]["top_logprobs"][ctxlen:-1]
            is_greedy = all(tok == max(top.values()) for tok, top in zip(token_logprobs, top_logprobs))  # fmt: skip
            res.append((sum(token_logprobs), is_greedy))
    return res


def test_lm_eval_loglikelihood_request(served, loaded):
    """lm-eval's exact loglikelihood request (token-id prompts, echo, logprobs 1, max_tokens 1),
    parsed as lm-eval parses it, equals a plain forward pass of the model."""
    model, tok = loaded
    url, _ = served
    context = tok("The capital of France is", add_special_tokens=False).input_ids
    wrong = tok(" a banana", add_special_tokens=False).input_ids
    # A continuation the model itself would pick greedily: is_greedy must say so.
    greedy, row_ids = [], list(context)
    for _ in range(3):
        nxt = int(log_softmax(model, row_ids)[-1].argmax())
        greedy.append(nxt)
        row_ids.append(nxt)
    pairs = [(context, wrong), (context, greedy)]
    body = {
        "model": "lima-test",
        "prompt": [c + x for c, x in pairs],
        "temperature": 0,
        "max_tokens": 1,
        "logprobs": 1,
        "seed": 1234,
        "echo": True,
    }
    r = post(url, "/completions", body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["object"] == "text_completion" and len(out["choices"]) == 2
    for choice, (c, x) in zip(out["choices"], pairs):
        lp = choice["logprobs"]
        n = len(c) + len(x)
        assert len(lp["tokens"]) == len(lp["token_logprobs"]) == len(lp["top_logprobs"]) == n + 1
        assert lp["token_logprobs"][0] is None and lp["top_logprobs"][0] is None
        assert len(lp["text_offset"]) == n + 1
    got = parse_logprobs(out, [len(c) for c, _ in pairs])
    for (ll, is_greedy), (c, x) in zip(got, pairs):
        ref = log_softmax(model, c + x)
        want = sum(ref[len(c) - 1 + t, tok_id].item() for t, tok_id in enumerate(x))
        assert ll == pytest.approx(want, abs=TOL)
        ref_greedy = all(int(ref[len(c) - 1 + t].argmax()) == tid for t, tid in enumerate(x))
        assert is_greedy == ref_greedy
    assert [g for _, g in got] == [False, True]


def test_completions_text_prompts_generation_and_echo(served, loaded):
    model, tok = loaded
    url, _ = served
    client = openai.OpenAI(base_url=url, api_key="sekret", max_retries=0)
    prompt = "Once upon a time <|im_start|> the sea"
    r = client.completions.create(
        model="lima-test",
        prompt=prompt,
        max_tokens=5,
        temperature=0,
        logprobs=2,
        echo=True,
        extra_body={"repetition_penalty": 1.0},
    )
    choice = r.choices[0]
    assert choice.text.startswith(prompt) and r.usage.completion_tokens <= 5
    # Plain text, no chat template; control-token text stays text.
    ids = tok(prompt, add_special_tokens=False, split_special_tokens=True).input_ids
    assert 1 not in ids and r.usage.prompt_tokens == len(ids)
    lp = choice.logprobs
    assert lp.token_logprobs[0] is None and len(lp.tokens) >= len(ids)
    ref = log_softmax(model, ids)
    want = [ref[t, ids[t + 1]].item() for t in range(len(ids) - 1)]
    assert lp.token_logprobs[1 : len(ids)] == pytest.approx(want, abs=TOL)
    assert all(len(top) >= 2 for top in lp.top_logprobs[1:])
    assert lp.text_offset[: len(ids)] == [len(tok.decode(ids[:t])) for t in range(len(ids))]
    # Several prompts, numbered in order; the same answer alone or in a list; stop strings.
    many = client.completions.create(
        model="lima-test", prompt=["The sea", prompt], max_tokens=5, temperature=0, seed=1,
        extra_body={"repetition_penalty": 1.0},
    )  # fmt: skip
    assert [c.index for c in many.choices] == [0, 1]
    assert many.choices[1].text == choice.text[len(prompt) :]
    assert many.choices[0].logprobs is None
    # max_tokens 0 with echo scores the prompt only.
    zero = post(url, "/completions", {"model": "lima-test", "prompt": prompt, "max_tokens": 0,
                                      "echo": True, "logprobs": 0}).json()  # fmt: skip
    assert zero["choices"][0]["text"] == prompt
    assert zero["choices"][0]["logprobs"]["token_logprobs"][1:] == pytest.approx(want, abs=TOL)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"prompt": []}, "prompt"),
        ({"prompt": [1, "a"]}, "prompt"),
        ({"prompt": "x", "logprobs": 21}, "logprobs"),
        ({"prompt": "x", "stream": True}, "stream"),
        ({"prompt": [[10**9]]}, "prompt"),
        ({"prompt": "sea " * 5000}, "prompt"),
        ({"prompt": "x", "max_tokens": 5000}, "max_tokens"),
        ({"prompt": "x", "best_of": 3}, "best_of"),
    ],
)
def test_bad_completions_requests_are_400(served, body, param):
    url, _ = served
    r = post(url, "/completions", {"model": "lima-test", **body})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] == param


# -- fields not honoured ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]}, "tools"),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"logit_bias": {"50": 5}}, "logit_bias"),
        ({"presence_penalty": 0.5}, "presence_penalty"),
        ({"frequency_penalty": 1}, "frequency_penalty"),
        ({"top_k": 5}, "top_k"),
        ({"store": True}, "store"),
        ({"echo": True}, "echo"),
        ({"some_new_field": 1}, "some_new_field"),
        ({"messages": [{"role": "user", "content": "x", "name": "bob"}]}, "messages[0].name"),
    ],
)
def test_fields_not_honoured_are_400_naming_them(served, extra, param):
    url, _ = served
    r = post(url, "/chat/completions", {"model": "lima-test", "messages": MSG, **extra})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] == param and param.split(".")[-1] in err["message"]
    assert err["type"] == "invalid_request_error"


def test_fields_harmless_at_their_default_are_accepted(served):
    url, _ = served
    harmless = {
        "presence_penalty": 0,
        "frequency_penalty": 0.0,
        "n": 1,
        "user": "someone",
        "stream_options": {"include_usage": True},
        "logit_bias": {},
        "tools": [],
        "tool_choice": "none",
        "response_format": {"type": "text"},
        "top_k": -1,
        "logprobs": False,
        "metadata": {"run": "x"},
        "parallel_tool_calls": True,
    }
    body = {"model": "lima-test", "messages": MSG, "max_tokens": 2, **harmless}
    assert post(url, "/chat/completions", body).status_code == 200
    body = {
        "model": "lima-test",
        "prompt": "x",
        "max_tokens": 2,
        "presence_penalty": 0,
        "user": "u",
    }
    assert post(url, "/completions", body).status_code == 200


# -- queue time ------------------------------------------------------------------------------


def test_queue_time_in_usage_header_and_log(tiny, caplog):
    """With one batch slot held by a long answer, a short request waits, and says how long."""
    model, tok = tiny.pair
    started = threading.Event()

    def slow(_module, _args):
        started.set()
        time.sleep(0.02)

    model.register_forward_pre_hook(slow)
    caplog.set_level(logging.INFO, logger="limakit.serve")
    with serving(model, tok, max_batch=1) as (url, _):
        long: dict = {}

        def ask_long():
            body = {"model": "lima-test", "messages": MSG, "max_tokens": 40}
            long["r"] = httpx.post(url + "/chat/completions", json=body, timeout=60)

        t = threading.Thread(target=ask_long)
        t.start()
        assert started.wait(30)
        time.sleep(0.1)
        short = httpx.post(
            url + "/chat/completions",
            json={"model": "lima-test", "messages": MSG, "max_tokens": 2},
            timeout=60,
        )
        t.join(60)
        stream = httpx.post(
            url + "/chat/completions",
            json={
                "model": "lima-test",
                "messages": MSG,
                "max_tokens": 2,
                "stream": True,
                "stream_options": {"include_usage": True},
            },  # fmt: skip
            timeout=60,
        )
    assert short.status_code == 200 and long["r"].status_code == 200
    waited = short.json()["usage"]["queue_time_s"]
    assert waited > 0.2  # it waited for most of the long answer's 40 steps
    assert float(short.headers["x-queue-time"]) == pytest.approx(waited, abs=1e-3)
    assert long["r"].json()["usage"]["queue_time_s"] < waited
    events = [line[6:] for line in stream.text.splitlines() if line.startswith("data: {")]
    assert json.loads(events[-1])["usage"]["queue_time_s"] >= 0
    lines = [r.getMessage() for r in caplog.records if r.name == "limakit.serve"]
    assert len(lines) == 3 and all("queue_time=" in line for line in lines)
    # The log has 3 decimals of the same time usage gives with 4 (no double rounding here).
    logged = [float(m) for line in lines for m in re.findall(r"queue_time=([\d.]+)s", line)]
    assert any(abs(x - waited) <= 0.00056 for x in logged), (logged, waited)


# -- text that is not Unicode ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/chat/completions", '{"model": "lima-test", "messages": [{"role": "user", "content": "a\\ud800b"}]}', "messages[0].content"),  # noqa: E501
        ("/chat/completions", '{"model": "lima-test", "messages": [{"role": "user", "content": [{"type": "text", "text": "\\udfff"}]}]}', "messages[0].content"),  # noqa: E501
        ("/chat/completions", '{"model": "lima-\\ud800", "messages": [{"role": "user", "content": "a"}]}', "model"),  # noqa: E501
        ("/chat/completions", '{"model": "lima-test", "stop": ["\\ud800"], "messages": [{"role": "user", "content": "a"}]}', "stop"),  # noqa: E501
        ("/chat/completions", '{"model": "lima-test", "\\ud800": 1, "messages": [{"role": "user", "content": "a"}]}', None),  # noqa: E501
        ("/completions", '{"model": "lima-test", "prompt": ["ok", "\\ud800"]}', "prompt"),
    ],
)  # fmt: skip
def test_a_lone_surrogate_is_400_naming_the_field(served, path, body, param):
    url, _ = served
    headers = {**KEY, "Content-Type": "application/json"}
    r = httpx.post(url + path, content=body.encode(), headers=headers, timeout=60)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] == param and "surrogate" in err["message"]


# -- the command line ------------------------------------------------------------------------


def test_serve_help_explains_fields_and_batch_size():
    from limakit.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command" or getattr(a, "choices", None))
    text = sub.choices["serve"].format_help()
    for word in ("tools", "presence_penalty", "top_logprobs", "/v1/completions", "queue"):
        assert word in text, word
