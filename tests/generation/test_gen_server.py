"""`lima serve`'s app on a loopback port, driven by the official openai client."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest

from limakit.generation.config import DecodeConfig

from .serving import start


def _serve(model, tok, **kw):
    server, thread, url, _app = start(model, tok, **kw)
    return server, thread, url


@pytest.fixture(scope="module")
def server_url(tiny_model_dir):

    from limakit.models import load_model_for

    model, tok = load_model_for(tiny_model_dir, "cpu", "float32").pair
    server, thread, url = _serve(
        model, tok, api_key="sekret", config=DecodeConfig(max_new_tokens=8)
    )
    yield url
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def client(server_url):
    return openai.OpenAI(base_url=server_url, api_key="sekret", max_retries=0)


MSG = [{"role": "user", "content": "Say something about the sea."}]


def test_models_and_plain_completion(client):
    assert [m.id for m in client.models.list().data] == ["lima-test"]
    r = client.chat.completions.create(model="lima-test", messages=MSG, max_tokens=6, seed=1)
    choice = r.choices[0]
    assert choice.message.role == "assistant" and choice.finish_reason in ("stop", "length")
    assert "<|eot|>" not in choice.message.content
    assert r.usage.completion_tokens <= 6 and r.usage.prompt_tokens > 5
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    again = client.chat.completions.create(model="lima-test", messages=MSG, max_tokens=6, seed=1)
    assert again.choices[0].message.content == choice.message.content  # same seed, same text


def test_streamed_completion_matches_plain(client):
    kw = dict(model="lima-test", messages=MSG, max_tokens=6, seed=2, temperature=0.9, top_p=0.95)
    plain = client.chat.completions.create(**kw).choices[0].message.content
    chunks = list(client.chat.completions.create(stream=True, **kw))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")


def test_raw_sse_ends_with_done(server_url):
    body = {
        "model": "lima-test",
        "messages": MSG,
        "max_tokens": 4,
        "stream": True,
        "n": 2,
        "stream_options": {"include_usage": True},
    }
    headers = {"Authorization": "Bearer sekret"}
    with httpx.stream("POST", server_url + "/chat/completions", json=body, headers=headers) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    finished = {
        c["choices"][0]["index"]
        for c in chunks
        if c["choices"] and c["choices"][0]["finish_reason"]
    }
    assert finished == {0, 1}
    assert chunks[-1]["usage"]["completion_tokens"] <= 8


def test_n_choices_and_stop(client):
    r = client.chat.completions.create(model="lima-test", messages=MSG, max_tokens=8, n=3, seed=4)
    texts = [c.message.content for c in r.choices]
    assert [c.index for c in r.choices] == [0, 1, 2] and len(set(texts)) > 1
    # Stopping at the first character of the first answer leaves an empty, "stop"-ed answer.
    first = texts[0].strip()[:1]
    assert first  # the seeded first answer has text to stop at
    s = client.chat.completions.create(
        model="lima-test", messages=MSG, max_tokens=8, n=3, seed=4, stop=[first]
    )
    assert s.choices[0].finish_reason == "stop" and first not in s.choices[0].message.content


def test_bad_requests_get_openai_errors(client, server_url):
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(
            model="lima-test", messages=[{"role": "wizard", "content": "x"}]
        )
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="lima-test", messages=MSG, max_tokens=10**6)
    assert e.value.code == "context_length_exceeded"
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(
            model="lima-test", messages=[*MSG, {"role": "assistant", "content": "ends with me"}]
        )
    r = httpx.post(
        server_url + "/chat/completions",
        json={"model": "x"},
        headers={"Authorization": "Bearer sekret"},
    )
    assert r.status_code == 400 and "messages" in r.json()["error"]["message"]
    r = httpx.post(
        server_url + "/chat/completions",
        content=b"{not json",
        headers={"Authorization": "Bearer sekret"},
    )
    assert r.status_code == 400
    bad = openai.OpenAI(base_url=server_url, api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.chat.completions.create(model="lima-test", messages=MSG)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()


def test_sixteen_concurrent_requests(client):
    def ask(i):
        stream = i % 2 == 1
        kw = dict(
            model="lima-test",
            max_tokens=5 + i % 4,
            seed=i,
            messages=[{"role": "user", "content": f"Question {i}: " + "tell me more. " * i}],
        )
        if stream:
            return "".join(
                c.choices[0].delta.content or ""
                for c in client.chat.completions.create(stream=True, **kw)
                if c.choices
            )
        return client.chat.completions.create(**kw).choices[0].message.content

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(ask, range(16)))
    assert len(answers) == 16 and all(isinstance(a, str) for a in answers)
    # The server is still healthy afterwards.
    assert client.models.list().data[0].id == "lima-test"


@pytest.mark.slow
def test_smollm2_end_to_end(smollm2_dir):
    from limakit.models import load_model_for

    model, tok = load_model_for(smollm2_dir, "cpu", "bfloat16").pair
    server, thread, url = _serve(model, tok)
    try:
        c = openai.OpenAI(base_url=url, api_key="none", max_retries=0)
        r = c.chat.completions.create(
            model="lima-test",
            messages=[{"role": "user", "content": "What is the capital of France?"}],
            max_tokens=12,
            temperature=0,
        )
        assert r.choices[0].message.content.strip() and r.usage.completion_tokens <= 12
    finally:
        server.should_exit = True
        thread.join(timeout=10)
