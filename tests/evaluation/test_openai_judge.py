"""The openai backend against a real HTTP server on loopback whose behaviour each test scripts."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from limakit.cli import main
from limakit.core.files import write_jsonl
from limakit.evaluation import JudgeConfig, judge_likert, judge_pairwise, judge_rate
from tests.evaluation.fake_server import (
    Act,
    FakeServer,
    always_first,
    broken_json,
    html_page,
    prefer_marked,
)
from tests.evaluation.helpers import answer, write_pair

# p0-p3: A has the GOOD answer; p4: B has it; p5: both do (the judge says neither).
A_TEXTS = ["GOOD a0", "GOOD a1 longer", "GOOD", "GOOD a3", "weak a4", "GOOD a5"]
B_TEXTS = ["weak b0", "weak b1", "weak b2", "weak b3", "GOOD b4 is the longest one", "GOOD b5"]


def cfg(server: FakeServer, **kw) -> JudgeConfig:
    return JudgeConfig(backend="openai", model="judge", base_url=server.url, **kw)


@pytest.fixture
def pair(tmp_path):
    return write_pair(tmp_path, A_TEXTS, B_TEXTS)


def test_correct_verdicts_win_tie_lose(tmp_path, pair):
    with FakeServer(prefer_marked) as server:
        s = judge_pairwise(*pair, cfg(server), tmp_path / "out")
    assert (s["n"], s["win"], s["lose"]) == (
        6,
        pytest.approx(4 / 6, abs=1e-5),
        pytest.approx(1 / 6, abs=1e-5),
    )
    assert s["tie"] == pytest.approx(1 / 6, abs=1e-5)
    assert s["consistency"] == 1.0 and s["invalid"] == 0
    assert s["win_ci"][0] <= s["win"] <= s["win_ci"][1]
    assert s["usage"]["calls"] == 12 and s["usage"]["prompt_tokens"] == 1200
    # Lengths differ in p1 (longer A won), p2 (shorter A won), p4 (longer B won).
    assert s["length_bias"] == {"longer_won": 0.666667, "decided": 3}
    assert s["categories"]["cat-even"]["n"] == 3
    rows = [
        json.loads(line) for line in (tmp_path / "out" / "verdicts.jsonl").read_text().splitlines()
    ]
    assert [r["result"] for r in rows] == ["win"] * 4 + ["lose", "tie"]
    assert rows[0]["a_then_b"]["label"] == "A" and rows[0]["b_then_a"]["label"] == "B"
    assert rows[0]["a_then_b"]["raw"] == ["Reasoning.\n[[A]]"]
    # Both orders really were shown: the first call has A's answer first, the second B's.
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["win"] == s["win"]


def test_always_first_judge_gives_ties_not_wins(tmp_path, pair):
    with FakeServer(always_first) as server:
        s = judge_pairwise(*pair, cfg(server), tmp_path / "out")
    assert (s["win"], s["tie"], s["lose"]) == (0.0, 1.0, 0.0)
    assert s["consistency"] == 0.0


def test_retry_after_is_honoured(tmp_path, pair):
    def behaviour(body, n):
        return (
            Act("slow down", status=429, headers={"Retry-After": "1"})
            if n == 0
            else prefer_marked(body, n)
        )

    with FakeServer(behaviour) as server:
        s = judge_pairwise(*pair, cfg(server, concurrency=1), tmp_path / "out")
        gap = server.calls[1]["_t"] - server.calls[0]["_t"]
    assert gap >= 0.9  # waited as told before the retry
    assert (
        s["usage"]["retries"] == 1
        and s["invalid"] == 0
        and s["win"] == pytest.approx(4 / 6, abs=1e-5)
    )


def test_server_errors_are_retried(tmp_path, pair):
    with FakeServer(
        lambda body, n: Act("boom", status=500) if n < 3 else prefer_marked(body, n)
    ) as server:
        s = judge_pairwise(*pair, cfg(server, concurrency=1), tmp_path / "out")
    assert s["usage"]["retries"] == 3 and s["invalid"] == 0 and s["errors"] == 0
    assert s["win"] == pytest.approx(4 / 6, abs=1e-5)


def test_slow_response_times_out_and_is_retried(tmp_path, pair):
    with FakeServer(
        lambda body, n: Act("[[A]]", delay=3) if n == 0 else prefer_marked(body, n)
    ) as server:
        s = judge_pairwise(*pair, cfg(server, concurrency=1, timeout=0.5), tmp_path / "out")
    assert s["usage"]["retries"] == 1 and s["invalid"] == 0
    assert s["win"] == pytest.approx(4 / 6, abs=1e-5)


def test_persistent_errors_are_reported_not_dropped(tmp_path, pair):
    with FakeServer(lambda body, n: Act("down", status=503)) as server:
        s = judge_pairwise(*pair, cfg(server, max_retries=1), tmp_path / "out")
        calls = len(server.calls)
    assert calls == 12 * 2  # each judgement: one call + one retry
    assert s["invalid"] == 6 and s["n"] == 0 and s["errors"] == 12


def test_nonsense_is_retried_once_then_invalid(tmp_path, pair):
    with FakeServer(lambda body, n: Act("I like turtles.")) as server:
        s = judge_pairwise(*pair, cfg(server), tmp_path / "out")
        calls = len(server.calls)
    assert calls == 24  # 6 pairs x 2 orders x (first try + one re-ask)
    assert s["invalid"] == 6 and s["n"] == 0 and s["win"] == 0.0
    rows = [json.loads(x) for x in (tmp_path / "out" / "verdicts.jsonl").read_text().splitlines()]
    assert rows[0]["result"] == "invalid" and rows[0]["a_then_b"]["raw"] == ["I like turtles."] * 2


def test_nonsense_once_recovers_on_the_reask(tmp_path, pair):
    seen = set()

    def behaviour(body, n):
        key = body["messages"][-1]["content"]
        if key not in seen:
            seen.add(key)
            return Act("hmm")
        return prefer_marked(body, n)

    with FakeServer(behaviour) as server:
        s = judge_pairwise(*pair, cfg(server), tmp_path / "out")
    assert s["invalid"] == 0 and s["win"] == pytest.approx(4 / 6, abs=1e-5)


def test_cache_makes_rerun_free(tmp_path, pair):
    with FakeServer(prefer_marked) as server:
        first = judge_pairwise(*pair, cfg(server), tmp_path / "out")
        n = len(server.calls)
        second = judge_pairwise(*pair, cfg(server), tmp_path / "out")
        assert len(server.calls) == n == 12
    assert second["usage"]["calls"] == 0 and second["usage"]["cached"] == 12
    assert {k: second[k] for k in ("win", "tie", "lose")} == {
        k: first[k] for k in ("win", "tie", "lose")
    }


def test_killed_run_resumes_with_only_missing_calls(tmp_path):
    a_texts = [f"GOOD a{i}" for i in range(10)]
    b_texts = [f"weak b{i}" for i in range(10)]
    a, b = write_pair(tmp_path, a_texts, b_texts)

    def hang_after_8(body, n):
        return Act("[[A]]", delay=60) if n >= 8 else prefer_marked(body, n)

    out = tmp_path / "out"
    with FakeServer(hang_after_8) as server:
        conf = tmp_path / "judge.yaml"
        conf.write_text(f"backend: openai\nmodel: judge\nbase_url: {server.url}\nconcurrency: 2\n")
        proc = subprocess.Popen(
            [sys.executable, "-m", "limakit", "judge", "pairwise", "--a", str(a), "--b", str(b),
             "--judge", str(conf), "--out", str(out)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while len(server.calls) < 10 and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert not (out / "summary.json").exists()
        done = (
            sqlite3.connect(out / "cache.sqlite")
            .execute("SELECT COUNT(*) FROM replies")
            .fetchone()[0]
        )
        assert done == 8
        server.behaviour = prefer_marked
        before = len(server.calls)
        s = judge_pairwise(a, b, cfg(server), out)
        assert len(server.calls) - before == 20 - done  # only the missing calls
    assert s["usage"]["cached"] == done and s["win"] == 1.0


def test_unmatched_ids_are_counted(tmp_path):
    a = tmp_path / "a.jsonl"
    b = tmp_path / "b.jsonl"
    write_jsonl(a, [answer(i, "GOOD", "m-a", sample=None) for i in range(4)])  # no sample: 0
    write_jsonl(b, [answer(i, "weak", "m-b") for i in (0, 1, 2, 7)])
    with FakeServer(prefer_marked) as server:
        s = judge_pairwise(a, b, cfg(server), tmp_path / "out")
    assert s["pairs"] == 3 and s["unmatched"]["a"] == 1 and s["unmatched"]["b"] == 1
    assert s["unmatched"]["a_ids"] == ["p3"] and s["unmatched"]["b_ids"] == ["p7"]


def test_api_key_comes_from_env_and_is_never_written(tmp_path, pair, monkeypatch):
    monkeypatch.setenv("JUDGE_TEST_KEY", "sk-secret-123")
    with FakeServer(prefer_marked) as server:
        judge_pairwise(*pair, cfg(server, api_key_env="JUDGE_TEST_KEY"), tmp_path / "out")
        assert server.calls[0]["_auth"] == "Bearer sk-secret-123"
    for f in (tmp_path / "out").iterdir():
        if f.is_file():
            assert b"sk-secret-123" not in f.read_bytes(), f.name


def test_mt_bench_prompt_and_cli(tmp_path, pair, capsys):
    with FakeServer(prefer_marked) as server:
        conf = tmp_path / "judge.yaml"
        conf.write_text(
            f"backend: openai\nmodel: judge\nbase_url: {server.url}\nprompt: mt-bench-pair-v2\n"
        )
        rc = main(["judge", "pairwise", "--a", str(pair[0]), "--b", str(pair[1]), "--judge", str(conf),
                   "--out", str(tmp_path / "out"), "--set", "cost_per_input_token=0.001"])  # fmt: skip
        assert "impartial judge" in server.calls[0]["messages"][0]["content"]
    assert rc == 0
    s = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert s["judge"]["prompt"].startswith("mt-bench-pair-v2@") and s["usage"]["cost"] == 1.2
    assert "model-a vs model-b" in capsys.readouterr().out


def test_bad_config_is_one_clear_error(tmp_path, pair, capsys):
    conf = tmp_path / "judge.yaml"
    conf.write_text("backend: openai\nmodel: judge\n")
    rc = main(["judge", "pairwise", "--a", str(pair[0]), "--b", str(pair[1]), "--judge", str(conf),
               "--out", str(tmp_path / "out")])  # fmt: skip
    assert rc == 2 and "base_url" in capsys.readouterr().err


def _score_by_text(body, n):
    text = body["messages"][-1]["content"]
    if "[[Fail]]" in body["messages"][0]["content"]:
        return Act("[[Excellent]]" if "GOOD" in text else "[[Fail]]")
    return Act("[[6]]" if "GOOD" in text else "Rating: [[2]]")


def test_rate_and_likert_with_samples(tmp_path):
    rows = [
        answer(i, "GOOD" if k < 2 else "weak", "m", sample=k) for i in range(3) for k in range(4)
    ]
    path = tmp_path / "answers.jsonl"
    write_jsonl(path, rows)
    with FakeServer(_score_by_text) as server:
        lk = judge_likert(path, cfg(server), tmp_path / "likert", samples=3)
        rt = judge_rate(path, cfg(server), tmp_path / "rate")
        assert len(server.calls) == 9 + 12
    # Each prompt: samples 0, 1 GOOD (6), sample 2 weak (2) -> mean 14/3.
    assert (
        lk["mean"] == pytest.approx(14 / 3, abs=1e-5)
        and lk["n"] == 9
        and lk["skipped_samples"] == 3
    )
    assert lk["mean_ci"] == [pytest.approx(14 / 3, abs=1e-5)] * 2  # every prompt has the same mean
    assert lk["distribution"]["6"] == 6 and lk["invalid"] == 0
    assert rt["excellent"] == 0.5 and rt["fail"] == 0.5 and rt["mean"] == 1.0
    rc = main(
        ["report", str(tmp_path / "likert"), str(tmp_path / "rate"), "--out", str(tmp_path / "rep")]
    )
    assert rc == 0 and "Helpfulness" in (tmp_path / "rep" / "report.md").read_text()


def test_env_key_not_required_for_local_servers(tmp_path, pair, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with FakeServer(prefer_marked) as server:
        s = judge_pairwise(*pair, cfg(server), tmp_path / "out")
    assert s["n"] == 6
    assert os.environ.get("OPENAI_API_KEY") is None


def test_broken_json_reply_is_retried_then_succeeds(tmp_path, pair):
    # Every third call answers 200 with a cut-off JSON body; the retry gets a real verdict.
    with FakeServer(
        lambda body, n: broken_json(body, n) if n % 3 == 0 else prefer_marked(body, n)
    ) as server:
        s = judge_pairwise(*pair, cfg(server, concurrency=1), tmp_path / "out")
    assert s["invalid"] == 0 and s["errors"] == 0 and s["n"] == 6
    assert s["usage"]["retries"] == 6  # calls 0, 3, 6, ... 15 of 18 were broken
    assert s["win"] == pytest.approx(4 / 6, abs=1e-5)


def test_broken_json_every_time_is_an_error_not_a_crash(tmp_path, pair):
    with FakeServer(broken_json) as server:
        s = judge_pairwise(*pair, cfg(server, max_retries=1), tmp_path / "out")
        calls = len(server.calls)
    assert calls == 12 * 2  # each judgement: one call + one retry, like any failed call
    assert s["invalid"] == 6 and s["n"] == 0 and s["errors"] == 12
    rows = [json.loads(x) for x in (tmp_path / "out" / "verdicts.jsonl").read_text().splitlines()]
    assert "not valid JSON" in rows[0]["a_then_b"]["error"]


def test_html_reply_is_retried_then_succeeds(tmp_path, pair):
    # A 200 text/html page (a proxy's error page) is a reply body that is not JSON: retried.
    with FakeServer(
        lambda body, n: html_page(body, n) if n % 3 == 0 else prefer_marked(body, n)
    ) as server:
        s = judge_pairwise(*pair, cfg(server, concurrency=1), tmp_path / "out")
    assert s["invalid"] == 0 and s["errors"] == 0 and s["n"] == 6
    assert s["usage"]["retries"] == 6
    assert s["win"] == pytest.approx(4 / 6, abs=1e-5)


def test_html_reply_every_time_is_an_error_after_the_retries(tmp_path, pair):
    with FakeServer(html_page) as server:
        s = judge_pairwise(*pair, cfg(server, max_retries=1), tmp_path / "out")
        calls = len(server.calls)
    assert calls == 12 * 2 and s["errors"] == 12 and s["n"] == 0
    rows = [json.loads(x) for x in (tmp_path / "out" / "verdicts.jsonl").read_text().splitlines()]
    error = rows[0]["a_then_b"]["error"]
    assert error.startswith("gave up after 1 retries: reply body is not a JSON object")
    assert "502 Bad Gateway" in error


def _judge_cli(tmp_path, server, protocol: str, *files: str) -> int:
    conf = tmp_path / "judge.yaml"
    conf.write_text(f"backend: openai\nmodel: judge\nbase_url: {server.url}\nmax_retries: 1\n")
    if protocol == "pairwise":
        inputs = ["--a", files[0], "--b", files[1]]
    else:
        inputs = ["--answers", files[0]]
    return main(
        ["judge", protocol, *inputs, "--judge", str(conf), "--out", str(tmp_path / protocol)]
    )


def test_cli_fails_when_no_pair_could_be_judged(tmp_path, pair, capsys):
    with FakeServer(lambda body, n: Act("down", status=503)) as server:
        rc = _judge_cli(tmp_path, server, "pairwise", str(pair[0]), str(pair[1]))
    out = capsys.readouterr()
    assert rc == 1
    assert "12 calls failed" in out.out and "no pair could be judged" in out.err
    assert (tmp_path / "pairwise" / "verdicts.jsonl").exists()  # every failure kept for a look


@pytest.mark.parametrize("protocol", ["rate", "likert"])
def test_cli_fails_when_no_answer_could_be_judged(tmp_path, pair, capsys, protocol):
    with FakeServer(broken_json) as server:
        rc = _judge_cli(tmp_path, server, protocol, str(pair[0]))
    out = capsys.readouterr()
    assert rc == 1
    assert "6 calls failed" in out.out and "no answer could be judged" in out.err


def test_cli_reports_failures_but_succeeds_when_some_were_judged(tmp_path, pair, capsys):
    with FakeServer(
        lambda body, n: (
            Act("down", status=503) if "Question 0" in str(body) else prefer_marked(body, n)
        )
    ) as server:
        rc = _judge_cli(tmp_path, server, "pairwise", str(pair[0]), str(pair[1]))
    out = capsys.readouterr().out
    assert rc == 0 and "5 pairs judged" in out and "2 calls failed" in out


def _with_usage(usage) -> Act:
    """A 200 reply with a verdict whose ``usage`` holds what a faulty server sent."""
    reply = {
        "id": "c",
        "object": "chat.completion",
        "created": 0,
        "model": "judge",
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {"role": "assistant", "content": "[[A]]"},
            }
        ],
        "usage": usage,
    }
    return Act(body=json.dumps(reply).encode())


@pytest.mark.parametrize(
    "usage",
    [
        {"prompt_tokens": "lots", "completion_tokens": 10, "total_tokens": 110},
        {"prompt_tokens": 100, "completion_tokens": -5, "total_tokens": 95},
        {"prompt_tokens": 1.5, "completion_tokens": 10, "total_tokens": 11.5},
        "lots",
    ],
)
def test_a_reply_with_bad_token_counts_is_malformed_not_a_crash(tmp_path, pair, usage):
    with FakeServer(lambda body, n: _with_usage(usage)) as server:
        s = judge_pairwise(*pair, cfg(server), tmp_path / "out")
    assert s["n"] == 0 and s["invalid"] == 6 and s["errors"] == 12
    assert s["usage"]["prompt_tokens"] == 0 and s["usage"]["completion_tokens"] == 0
    rows = [json.loads(x) for x in (tmp_path / "out" / "verdicts.jsonl").read_text().splitlines()]
    assert rows[0]["a_then_b"]["error"].startswith("malformed response (usage")
    # Nothing of a malformed reply is cached: a rerun against a sound server judges every pair.
    with FakeServer(prefer_marked) as server:
        s = judge_pairwise(*pair, cfg(server), tmp_path / "out")
    assert s["n"] == 6 and s["errors"] == 0 and s["usage"]["cached"] == 0


def test_a_reply_without_usage_counts_no_tokens(tmp_path, pair):
    with FakeServer(lambda body, n: _with_usage(None)) as server:
        s = judge_pairwise(*pair, cfg(server), tmp_path / "out")
    assert s["errors"] == 0 and s["usage"]["prompt_tokens"] == 0 and s["usage"]["calls"] == 12
