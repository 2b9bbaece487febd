"""A chat format's marker written by the model (limakit's next role header, a template's own
control token) ends the answer like the end of turn: the marker is not in the text, and the stop
is recorded as "marker" (answers.jsonl) while the wire says "stop" (the server)."""

from __future__ import annotations

import json

import httpx
import pytest

from limakit.generation import DecodeConfig, generate_answers
from limakit.generation.chat_format import ChatFormat
from limakit.generation.engine import Engine, Request
from limakit.generation.streaming import TextStream
from limakit.models import LoadedModel
from limakit.records.example import Example, Message
from limakit.records.template import Template

from .conftest import script
from .serving import serving

MSG = [{"role": "user", "content": "Say something about the sea."}]


def scripted_answer(tok, text: str) -> list[int]:
    """The ids of ``text`` then the EOT (where a model that ignored the marker would stop)."""
    eot = tok.convert_tokens_to_ids(Template().eot)
    return tok(text, add_special_tokens=False)["input_ids"] + [eot]


def test_the_text_stream_tells_a_marker_from_a_stop_string(smollm2_tokenizer):
    tok = smollm2_tokenizer
    ids = tok("The sea.\n<|user|>\nMore", add_special_tokens=False)["input_ids"]
    stream = TextStream(tok, stop=["zzz"], markers=("<|user|>", "<|assistant|>"))
    text = "".join(stream.push(i) for i in ids) + stream.finish()
    assert text == "The sea.\n" and stream.stopped and stream.at_marker
    stream = TextStream(tok, stop=["sea"], markers=("<|user|>",))
    "".join(stream.push(i) for i in ids)
    assert stream.stopped and not stream.at_marker and stream.text == "The "


def test_limakit_markers_are_its_headers_and_eot(tiny_model_dir):
    from limakit.models import load_model_for

    fmt = ChatFormat.for_loaded(load_model_for(tiny_model_dir, "cpu", "float32"))
    assert fmt.markers == ("<|eot|>", "<|system|>", "<|user|>", "<|assistant|>")
    assert fmt.marker_ids == set()


def test_the_engine_ends_a_sequence_at_a_marker_id(tiny):
    model, tok = tiny.pair
    marker = tok("sea", add_special_tokens=False)["input_ids"][0]
    words = tok(" hello world", add_special_tokens=False)["input_ids"]
    script(model, [*words, marker, *words])
    engine = Engine(LoadedModel.of(model, tok), marker_ids={marker}, max_batch=1)
    req = Request(prompt_ids=tok("Hi there")["input_ids"], max_new_tokens=20, logprobs=0)
    engine.run([req])
    assert req.finish_reason == "marker" and req.end_token == marker
    assert req.output_ids == words  # the marker is not part of the answer
    assert len(req.token_logprobs) == len(words) + 1  # but its log-probability is recorded


@pytest.mark.parametrize("header", ["<|user|>", "<|assistant|>"])
def test_generate_ends_the_answer_at_the_next_role_header(tiny, header):
    model, tok = tiny.pair
    script(model, scripted_answer(tok, f"The sea is blue.\n{header}\nAnd then more text"))
    prompts = [Example([Message("user", "Tell me about the sea.")], id="p0")]
    (answer,) = generate_answers(tiny, prompts, config=DecodeConfig(max_new_tokens=40),
                                 progress=False)  # fmt: skip
    assert answer.answer == "The sea is blue."
    assert answer.meta["stop"] == "marker"
    marker_end = len(tok(f"The sea is blue.\n{header}", add_special_tokens=False)["input_ids"])
    assert answer.meta["new_tokens"] <= marker_end  # generation stopped at the marker


def test_generate_without_a_marker_is_unchanged(tiny):
    model, tok = tiny.pair
    script(model, scripted_answer(tok, "The sea is blue, <user> says."))
    prompts = [Example([Message("user", "Tell me about the sea.")], id="p0")]
    (answer,) = generate_answers(tiny, prompts, config=DecodeConfig(max_new_tokens=40),
                                 progress=False)  # fmt: skip
    assert answer.answer == "The sea is blue, <user> says." and answer.meta["stop"] == "eot"


def test_the_server_strips_the_marker_and_says_stop(tiny):
    model, tok = tiny.pair
    script(model, scripted_answer(tok, "The sea is blue.\n<|user|>\nAnd then more text"))
    with serving(model, tok, config=DecodeConfig(max_new_tokens=40)) as (url, _):
        body = {"model": "lima-test", "messages": MSG, "temperature": 0}
        whole = httpx.post(url + "/chat/completions", json=body, timeout=60).json()
        choice = whole["choices"][0]
        assert choice["message"]["content"] == "The sea is blue.\n"
        assert choice["finish_reason"] == "stop"
        with httpx.stream(
            "POST", url + "/chat/completions", json={**body, "stream": True}, timeout=60
        ) as r:
            lines = [line[6:] for line in r.iter_lines() if line.startswith("data: {")]
        chunks = [json.loads(x)["choices"][0] for x in lines]
        assert "".join(c["delta"].get("content", "") for c in chunks) == "The sea is blue.\n"
        assert chunks[-1]["finish_reason"] == "stop"
        # /v1/completions is plain text, not a chat: the header is only text there.
        plain = {"model": "lima-test", "prompt": "The sea", "max_tokens": 20, "temperature": 0}
        text = httpx.post(url + "/completions", json=plain, timeout=60).json()["choices"][0]
        assert "<|user|>" in text["text"]
