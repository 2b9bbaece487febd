"""`lima serve` against one request that would starve the others, and against inputs that used to
get a 500, a misleading message or a server that never answers. Every test talks to a real server
(or runs the real command line)."""

from __future__ import annotations

import threading

import httpx
import pytest

from limakit.cli import build_parser, main
from limakit.generation.admission import FairQueue
from limakit.generation.config import DecodeConfig
from limakit.generation.engine import Request
from limakit.generation.server import MAX_SEQUENCES

from .serving import serving

MSG = [{"role": "user", "content": "Say something about the sea."}]


@pytest.fixture(scope="module")
def served(tiny_model_dir):
    from limakit.models import load_model_for

    model, tok = load_model_for(tiny_model_dir, "cpu", "float32").pair
    with serving(model, tok, config=DecodeConfig(max_new_tokens=4), max_sequences=6) as s:
        yield s


def post(url: str, path: str, body) -> httpx.Response:
    return httpx.post(url + path, json=body, timeout=60)


def post_raw(url: str, path: str, text: str) -> httpx.Response:
    headers = {"Content-Type": "application/json"}
    return httpx.post(url + path, content=text.encode(), headers=headers, timeout=60)


# -- the queue takes turns -------------------------------------------------------------------


def test_the_queue_takes_turns_between_groups_and_keeps_order_within_one():
    q: FairQueue[str] = FairQueue()
    for name in ("a1", "a2", "a3", "a4"):
        q.push(name, "A")
    assert q.pop() == "a1"
    q.push("b1", "B")
    q.push("b2", "B")
    q.push("c1", "C")
    assert [q.pop() for _ in range(3)] == ["a2", "b1", "c1"]
    q.push_back([("b2-again", "B"), ("a2-again", "A")])  # taken, then put back at the head
    assert len(q) == 5
    assert q.drain() == ["b2-again", "a2-again", "b2", "a3", "a4"]


def test_put_back_items_come_first_and_nothing_is_lost():
    q: FairQueue[str] = FairQueue()
    for name in ("a1", "a2", "a3"):
        q.push(name, "A")
    q.push("b1", "B")
    taken = [q.pop(), q.pop()]  # a1, b1
    assert taken == ["a1", "b1"]
    q.push_back([("a1", "A"), ("b1", "B")])
    assert q.drain() == ["a1", "b1", "a2", "a3"]
    assert len(q) == 0 and q.pop() is None


def test_ungrouped_sequences_keep_first_come_first_served():
    q: FairQueue[int] = FairQueue()
    for i in range(5):
        q.push(i)
    assert [q.pop() for _ in range(5)] == [0, 1, 2, 3, 4]


def test_a_small_request_behind_a_large_one_is_admitted_within_a_few_sequences(tiny):
    """A 32-sequence request holds both batch slots and the queue; a 1-sequence request sent
    behind it gets a slot after at most one more of the large one's sequences (first come, first
    served admitted all 32 first). Counted in admissions, not in time."""
    model, tok = tiny.pair
    gate, holding = threading.Event(), threading.Event()

    def hold_first_forward(_module, _args):
        if not gate.is_set():
            holding.set()
            gate.wait(30)  # a guard: the test opens the gate

    model.register_forward_pre_hook(hold_first_forward)
    admitted: list[object] = []  # each admitted sequence's group, in admission order
    added: list[Request] = []
    all_big, small_added = threading.Event(), threading.Event()

    class Watched(Request):
        def __setattr__(self, name, value):
            super().__setattr__(name, value)
            if name == "admitted" and value is not None:
                admitted.append(self.group)

    with serving(model, tok, max_batch=2) as (url, app):
        engine = app.state.engine
        real_add = engine.add

        def add(req):
            req.__class__ = Watched
            added.append(req)
            if len(added) == 32:
                all_big.set()
            if len(added) == 33:
                small_added.set()
            return real_add(req)

        engine.add = add
        replies: dict = {}
        big_body = {"model": "lima-test", "prompt": ["sea"] * 8, "n": 4, "max_tokens": 2}
        small_body = {"model": "lima-test", "messages": MSG, "max_tokens": 1}
        big = threading.Thread(
            target=lambda: replies.update(big=post(url, "/completions", big_body))
        )
        big.start()
        assert holding.wait(30) and all_big.wait(30)  # the engine holds big sequences now
        small = threading.Thread(
            target=lambda: replies.update(small=post(url, "/chat/completions", small_body))
        )
        small.start()
        assert small_added.wait(30)
        gate.set()
        big.join(60)
        small.join(60)
    assert replies["big"].status_code == 200 and replies["small"].status_code == 200
    big_group, small_group = added[0].group, added[32].group
    assert big_group is not small_group and len(admitted) == 33
    at = admitted.index(small_group)
    before = admitted[:at]
    assert all(g is big_group for g in before)
    # Those already in slots when it arrived (at most 2), then at most one more of the big one.
    assert len(before) <= 3, len(before)
    assert admitted[at + 1 :].count(big_group) >= 29  # the rest of the big one went after it


# -- one request's size ----------------------------------------------------------------------


def test_a_request_over_the_sequence_limit_is_400_naming_the_limit(served):
    url, _ = served
    r = post(url, "/completions", {"model": "lima-test", "prompt": ["x"] * 300, "n": 16})
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["param"] == "prompt" and err["code"] == "too_many_sequences"
    assert "4800" in err["message"] and "at most 6" in err["message"]
    r = post(url, "/chat/completions", {"model": "lima-test", "messages": MSG, "n": 7})
    assert r.status_code == 400 and r.json()["error"]["param"] == "n"
    assert "at most 6" in r.json()["error"]["message"]
    # At the limit it is answered.
    ok = post(
        url, "/completions", {"model": "lima-test", "prompt": ["x", "y"], "n": 3, "max_tokens": 1}
    )
    assert ok.status_code == 200 and len(ok.json()["choices"]) == 6


def test_the_default_limit_is_in_the_help():
    sub = next(a for a in build_parser()._actions if getattr(a, "choices", None))
    text = " ".join(sub.choices["serve"].format_help().split())
    assert "--max-sequences-per-request" in text and f"(default {MAX_SEQUENCES})" in text
    assert "--template {auto,own,limakit}" in text


# -- values that used to get a 500 or a misleading message -----------------------------------


@pytest.mark.parametrize("prompt", [[2**63], [[5, 2**70]], [[5], [2**64 + 1]], [10**9]])
def test_a_token_id_beyond_the_vocabulary_is_400_before_any_decoding(served, prompt):
    url, _ = served
    r = post(url, "/completions", {"model": "lima-test", "prompt": prompt, "max_tokens": 1})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] == "prompt" and "is not in the vocabulary" in err["message"]


@pytest.mark.parametrize(
    ("body", "param", "field_name"),
    [
        ('{"model": "lima-\\ud800", "messages": [{"role": "user", "content": "a"}]}', "model", False),  # noqa: E501
        ('{"model": "lima-test", "messages": [{"role": "us\\ud800er", "content": "a"}]}', "messages[0].role", False),  # noqa: E501
        ('{"model": "lima-test", "\\ud800": 1, "messages": [{"role": "user", "content": "a"}]}', None, True),  # noqa: E501
        ('{"model": "lima-test", "messages": [{"ro\\ud800le": "user", "content": "a"}]}', "messages[0]", True),  # noqa: E501
    ],
)  # fmt: skip
def test_a_lone_surrogate_is_reported_where_it_is(served, body, param, field_name):
    url, _ = served
    r = post_raw(url, "/chat/completions", body)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] == param and "lone UTF-16 surrogate" in err["message"]
    assert ("field name" in err["message"]) is field_name, err["message"]


@pytest.mark.parametrize(
    ("field", "raw"), [("temperature", "NaN"), ("top_p", "Infinity"), ("repetition_penalty", "-Infinity")]
)  # fmt: skip
def test_a_raw_nan_or_infinity_is_not_a_finite_number(served, field, raw):
    url, _ = served
    body = f'{{"model": "lima-test", "{field}": {raw}, "messages": [{{"role": "user", "content": "a"}}]}}'
    r = post_raw(url, "/chat/completions", body)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] == field and "finite number" in err["message"], err


# -- the command line refuses bad numbers before loading anything ----------------------------


@pytest.mark.parametrize(
    ("args", "flag", "says"),
    [
        (["serve", "--batch-size", "0"], "--batch-size", "at least 1 (got 0)"),
        (["serve", "--batch-size", "-4"], "--batch-size", "at least 1 (got -4)"),
        (["serve", "--port", "99999"], "--port", "1 to 65535 (got 99999)"),
        (["serve", "--port", "0"], "--port", "1 to 65535 (got 0)"),
        (["serve", "--max-sequences-per-request", "0"], "--max-sequences-per-request", "at least 1"),
        (["generate", "--batch-size", "0", "--prompts", "p.jsonl", "--out", "a.jsonl"], "--batch-size", "at least 1"),  # noqa: E501
    ],
)  # fmt: skip
def test_bad_numbers_fail_at_parsing_before_the_model_loads(monkeypatch, capsys, args, flag, says):
    import limakit.models

    def no_loading(*_a, **_k):
        raise AssertionError("the model was loaded before the arguments were checked")

    monkeypatch.setattr(limakit.models, "load_model_for", no_loading)
    with pytest.raises(SystemExit) as e:
        main([*args, "--model", "no-such-model-folder/x"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {flag}" in err and says in err and "Traceback" not in err
