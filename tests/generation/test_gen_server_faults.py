"""`lima serve` against the faults a hostile probe found: every test talks to a real server."""

from __future__ import annotations

import json
import socket
import threading

import httpx
import openai
import pytest

from limakit.generation.config import DecodeConfig

from .serving import raw_http, serving

MSG = [{"role": "user", "content": "Say something about the sea."}]
KEY = {"Authorization": "Bearer sekret"}
ERROR_FIELDS = {"message", "type", "param", "code"}


@pytest.fixture(scope="module")
def served(tiny_model_dir):
    from limakit.models import load_model_for

    model, tok = load_model_for(tiny_model_dir, "cpu", "float32").pair
    with serving(model, tok, api_key="sekret", config=DecodeConfig(max_new_tokens=8)) as s:
        yield s


def post(url: str, body, **kw) -> httpx.Response:
    return httpx.post(url + "/chat/completions", json=body, headers=KEY, timeout=60, **kw)


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/")[0])


def error_of(r: httpx.Response) -> dict:
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == ERROR_FIELDS, body
    return body["error"]


# -- request size and the event loop ---------------------------------------------------------


def test_a_50mb_request_is_refused_with_413_before_it_is_read(served):
    url, _ = served
    head = (
        "POST /v1/chat/completions HTTP/1.1\nHost: test\nAuthorization: Bearer sekret\n"
        f"Content-Type: application/json\nContent-Length: {50 * 2**20}\n"
    )
    # Only the first bytes are ever sent: the answer must come from the declared length alone.
    status, data = raw_http(port_of(url), head, b'{"model": "lima-test", "messages": [')
    assert status == 413
    err = json.loads(data.split(b"\r\n\r\n", 1)[1])["error"]
    assert err["code"] == "request_too_large" and err["type"] == "invalid_request_error"
    assert post(url, {"model": "lima-test", "messages": MSG, "max_tokens": 2}).status_code == 200


def test_a_chunked_body_over_the_limit_is_413(tiny):
    model, tok = tiny.pair

    def chunked(data: bytes) -> bytes:
        parts = [data[i : i + 1000] for i in range(0, len(data), 1000)]
        return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"

    head = (
        "POST /v1/chat/completions HTTP/1.1\nHost: test\nContent-Type: application/json\n"
        "Transfer-Encoding: chunked\n"
    )
    small = json.dumps({"model": "lima-test", "messages": MSG, "max_tokens": 2}).encode()
    big = json.dumps({"model": "lima-test", "messages": [{"role": "user", "content": "x" * 6000}]})
    with serving(model, tok, max_body_bytes=4096) as (url, _):
        assert raw_http(port_of(url), head, chunked(big.encode()))[0] == 413
        assert raw_http(port_of(url), head, chunked(small))[0] == 200  # under the limit: served


class GatedTokenizer:
    """The real tokenizer, except that a text containing ``marker`` waits for ``gate``."""

    def __init__(self, tok, marker: str):
        self._tok, self._marker = tok, marker
        self.entered, self.gate = threading.Event(), threading.Event()
        self.gate_was_open: bool | None = None

    def __getattr__(self, name):
        return getattr(self._tok, name)

    def __call__(self, text, *args, **kw):
        if isinstance(text, str) and self._marker in text:
            self.entered.set()
            # A generous guard against a deadlock: on a blocked event loop nobody opens the gate.
            self.gate_was_open = self.gate.wait(20)
        return self._tok(text, *args, **kw)


def test_a_slow_tokenisation_does_not_block_other_clients(tiny):
    model, tok = tiny.pair
    gated = GatedTokenizer(tok, "HUGE-PROMPT")
    with serving(model, gated) as (url, _):
        big: dict = {}

        def ask_big():
            body = {"model": "lima-test", "max_tokens": 2, "messages": [
                {"role": "user", "content": "HUGE-PROMPT " + "sea " * 200}]}  # fmt: skip
            big["r"] = httpx.post(url + "/chat/completions", json=body, timeout=60)

        t = threading.Thread(target=ask_big)
        t.start()
        assert gated.entered.wait(30)  # the big request is being tokenised now
        small = httpx.post(
            url + "/chat/completions",
            json={"model": "lima-test", "messages": MSG, "max_tokens": 2},
            timeout=60,
        )
        assert small.status_code == 200  # answered while the big one is still tokenising
        gated.gate.set()
        t.join(60)
    assert gated.gate_was_open is True  # the gate was opened by the test, not by the guard
    assert big["r"].status_code == 200


# -- decoding and context --------------------------------------------------------------------


def test_top_p_zero_decodes_greedily(served):
    url, _ = served
    base = {"model": "lima-test", "messages": MSG, "max_tokens": 8}
    greedy = post(url, {**base, "temperature": 0}).json()["choices"][0]["message"]["content"]
    for seed, temperature in ((1, 0.7), (2, 1.5)):
        r = post(url, {**base, "top_p": 0, "seed": seed, "temperature": temperature})
        assert r.status_code == 200
        assert r.json()["choices"][0]["message"]["content"] == greedy


def test_a_prompt_longer_than_the_context_is_400_without_max_tokens(served):
    url, _ = served
    client = openai.OpenAI(base_url=url, api_key="sekret", max_retries=0)
    long = [{"role": "user", "content": "sea " * 5000}]  # the tiny model's context: 4096
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="lima-test", messages=long)
    assert e.value.code == "context_length_exceeded"
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="lima-test", messages=long, stream=True)
    assert e.value.code == "context_length_exceeded"


# -- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "lima-test", "messages": MSG, "temperature": "hot"}, "temperature"),
        ({"model": "lima-test", "messages": MSG, "temperature": 2.5}, "temperature"),
        ({"model": "lima-test", "messages": MSG, "n": 0}, "n"),
        ({"model": "lima-test", "messages": MSG, "max_tokens": 0}, "max_tokens"),
        ({"model": "lima-test", "messages": MSG, "stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"model": "lima-test", "messages": [{"role": "user"}]}, "messages[0].content"),
        ({"model": "lima-test", "messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
        ({"model": "lima-test", "messages": []}, "messages"),
        ({"messages": MSG}, "model"),
        ([1, 2], None),
    ],
)  # fmt: skip
def test_validation_errors_are_400_in_openai_shape(served, body, param):
    url, _ = served
    r = post(url, body)
    assert r.status_code == 400
    err = error_of(r)
    assert err["type"] == "invalid_request_error" and err["param"] == param and err["message"]


def test_a_body_that_is_not_json_is_400(served):
    url, _ = served
    r = httpx.post(url + "/chat/completions", content=b"{not json", headers=KEY, timeout=60)
    assert r.status_code == 400 and error_of(r)["type"] == "invalid_request_error"


def test_an_unknown_model_is_404_model_not_found(served):
    url, _ = served
    client = openai.OpenAI(base_url=url, api_key="sekret", max_retries=0)
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="gpt-17", messages=MSG, max_tokens=2)
    assert e.value.code == "model_not_found" and "gpt-17" in e.value.message


class FailingTokenizer(GatedTokenizer):
    def __call__(self, text, *args, **kw):
        if isinstance(text, str) and self._marker in text:
            raise RuntimeError("tokenizer exploded")
        return self._tok(text, *args, **kw)


def test_server_faults_are_500_server_error(tiny):
    model, tok = tiny.pair
    broken = {"on": False}

    def hook(_module, _args):
        if broken["on"]:
            raise RuntimeError("the accelerator fell over")

    model.register_forward_pre_hook(hook)
    with serving(model, FailingTokenizer(tok, "EXPLODE")) as (url, _):
        body = {"model": "lima-test", "messages": MSG, "max_tokens": 4}
        broken["on"] = True
        r = httpx.post(url + "/chat/completions", json=body, timeout=60)
        assert r.status_code == 500
        err = error_of(r)
        assert err["type"] == "server_error" and "generation failed" in err["message"]
        broken["on"] = False
        # A fault outside the engine (here the tokenizer) is a JSON 500 too, not a bare page.
        bad = {**body, "messages": [{"role": "user", "content": "EXPLODE"}]}
        r = httpx.post(url + "/chat/completions", json=bad, timeout=60)
        assert r.status_code == 500 and error_of(r)["type"] == "server_error"
        ok = httpx.post(url + "/chat/completions", json=body, timeout=60)
        assert ok.status_code == 200  # still serving


# -- the API key and the docs ----------------------------------------------------------------


def test_docs_and_openapi_need_the_key(served):
    url, _ = served
    root = url[: -len("/v1")]
    for path in ("/docs", "/openapi.json"):
        r = httpx.get(root + path, timeout=60)
        assert r.status_code == 401 and error_of(r)["type"] == "authentication_error"
    assert httpx.get(root + "/docs", headers=KEY, timeout=60).status_code == 200
    spec = httpx.get(root + "/openapi.json", headers=KEY, timeout=60).json()
    fields = set(spec["components"]["schemas"]["ChatRequest"]["properties"])
    assert {"model", "messages", "temperature", "top_p", "n", "seed", "stop", "stream",
            "stream_options", "max_tokens", "max_completion_tokens"} <= fields  # fmt: skip


# -- a client that hangs up ------------------------------------------------------------------


def test_a_non_streaming_client_that_hangs_up_is_cancelled(tiny):
    model, tok = tiny.pair
    from limakit.generation.engine import Request

    cancelled, stepping, finished = threading.Event(), threading.Event(), threading.Event()

    class Watched(Request):
        def __setattr__(self, name, value):
            super().__setattr__(name, value)
            if name == "cancelled" and value:
                cancelled.set()

    captured = []

    def hook(_module, _args):
        if captured and not stepping.is_set():
            stepping.set()
            # Hold the engine in its first step until the server cancels the request (a guard
            # keeps a broken server from hanging the test).
            cancelled.wait(20)

    model.register_forward_pre_hook(hook)
    with serving(model, tok) as (url, app):
        engine = app.state.engine
        real_add = engine.add

        def add(req):
            req.__class__ = Watched
            done = req.on_finish
            req.on_finish = lambda r: (done(r), finished.set())
            captured.append(req)
            return real_add(req)

        engine.add = add
        body = json.dumps(
            {"model": "lima-test", "messages": MSG, "max_tokens": 200, "temperature": 0}
        ).encode()
        head = (
            "POST /v1/chat/completions HTTP/1.1\nHost: test\nContent-Type: application/json\n"
            f"Content-Length: {len(body)}\n"
        )
        sock = socket.create_connection(("127.0.0.1", port_of(url)), timeout=60)
        sock.sendall(head.replace("\n", "\r\n").encode() + b"\r\n" + body)
        assert stepping.wait(30)  # generating now
        sock.close()  # the client hangs up
        assert finished.wait(60)
    assert captured[0].finish_reason == "cancelled"
    assert len(captured[0].output_ids) < 200
