"""A judge reply is read before anything of it is cached, in every judge path.

A real local server answers HTTP 200 with a chat completion whose ``content`` is a number, a list
or null. Every path (``lima judge`` pairwise, rate and Likert, MT-Bench single and pairwise,
curation scoring, back-translation rating) counts those replies as failed calls, caches none of
them, and asks again once the judge answers text.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from limakit.cli import main
from limakit.core.errors import LimaError
from limakit.core.files import write_jsonl
from limakit.evaluation import JudgeConfig, judge_likert, judge_pairwise, judge_rate
from tests.evaluation.fake_server import Act, FakeServer
from tests.evaluation.helpers import answer, write_pair
from tests.evaluation.test_mtbench import QUESTIONS, REFERENCE

MALFORMED = [7, [1], None]


def cfg(server: FakeServer, **kw) -> JudgeConfig:
    return JudgeConfig(backend="openai", model="judge-x", base_url=server.url, bootstrap=20, **kw)


def cached_rows(path: Path) -> int:
    return sqlite3.connect(path).execute("SELECT COUNT(*) FROM replies").fetchone()[0]


# Each path: (run(server, tmp) -> (failed calls, judged items, requests), cache file, good reply).


def _pairwise(server, tmp):
    a, b = write_pair(tmp, ["GOOD a0", "GOOD a1"], ["weak b0", "weak b1"])
    s = judge_pairwise(a, b, cfg(server), tmp / "out")
    return s["errors"], 2 * s["n"], 4  # both orders of each pair


def _rate(server, tmp):
    path = tmp / "answers.jsonl"
    write_jsonl(path, [answer(i, "GOOD", "m") for i in range(3)])
    s = judge_rate(path, cfg(server), tmp / "out")
    return s["errors"], s["n"], 3


def _likert(server, tmp):
    path = tmp / "answers.jsonl"
    write_jsonl(path, [answer(i, "GOOD", "m") for i in range(3)])
    s = judge_likert(path, cfg(server), tmp / "out")
    return s["errors"], s["n"], 3


def _mtbench_files(tmp):
    q, ref = tmp / "question.jsonl", tmp / "ref.jsonl"
    write_jsonl(q, QUESTIONS)
    write_jsonl(ref, REFERENCE)
    files = []
    for model in ("m-one", "gpt-3.5-turbo"):
        files.append(tmp / "answers" / f"{model}.jsonl")
        write_jsonl(
            files[-1],
            [
                {
                    "question_id": x["question_id"],
                    "choices": [{"index": 0, "turns": [f"{model}: {t}" for t in x["turns"]]}],
                }
                for x in QUESTIONS
            ],
        )
    return q, ref, files


def _mtbench_single(server, tmp):
    from limakit.evaluation.mtbench.single import run_mtbench

    q, ref, files = _mtbench_files(tmp)
    r = run_mtbench(
        tmp / "out",
        judge=cfg(server),
        questions_path=q,
        reference_path=ref,
        other_answers=files[:1],
        progress=False,
    )
    return r["counts"]["errors"], r["counts"]["judged"], 5


def _mtbench_pair(server, tmp):
    from limakit.evaluation.mtbench.pairwise import run_mtbench_pairwise

    q, ref, files = _mtbench_files(tmp)
    r = run_mtbench_pairwise(
        tmp / "out",
        judge=cfg(server),
        questions_path=q,
        reference_path=ref,
        other_answers=files,
        progress=False,
    )
    return r["counts"]["errors"], r["counts"]["judged"] * 2, 10  # two games a row


def _curation(server, tmp):
    import numpy as np

    from limakit.curation.score_cache import ScoreCache, content_hash
    from limakit.curation.scoring import judge_scores
    from limakit.judging.cache import JudgeCache
    from limakit.records.example import Example, Message

    pool = [
        Example(messages=[Message("user", f"q{i}"), Message("assistant", f"a{i}")], source="t")
        for i in range(3)
    ]
    judge_cache = JudgeCache(tmp / "out" / "cache.sqlite")
    try:
        scores, report = judge_scores(
            pool,
            [content_hash(e) for e in pool],
            "rating",
            cfg(server),
            ScoreCache(tmp / "scores.sqlite"),
            judge_cache,
        )
    except LimaError as e:  # no example scored: one clear error naming the failed calls
        assert "3 calls failed" in str(e) and "malformed response" in str(e)
        return 3, 0, 3
    finally:
        judge_cache.close()
    return 0, int(np.isfinite(scores).sum()), 3


def _backtranslate(server, tmp):
    from limakit.backtranslate.rating import rate_pairs

    pairs = [{"id": f"t{i}", "instruction": f"Do {i}.", "text": f"Done {i}."} for i in range(3)]
    (tmp / "out").mkdir(exist_ok=True)
    rows = rate_pairs(pairs, cfg(server), tmp / "out" / "cache.sqlite")
    failed = [r for r in rows if r["error"]]
    assert all(r["error"].startswith("malformed response") for r in failed)
    return len(failed), sum(r["score"] is not None for r in rows), 3


PATHS = {
    "pairwise": (_pairwise, "[[A]]"),
    "rate": (_rate, "[[Pass]]"),
    "likert": (_likert, "[[5]]"),
    "mt-bench single": (_mtbench_single, "Rating: [[5]]"),
    "mt-bench pairwise": (_mtbench_pair, "[[A]]"),
    "curation scoring": (_curation, "[[4]]"),
    "back-translation rating": (_backtranslate, "[[4]]"),
}


@pytest.mark.parametrize("content", MALFORMED, ids=["number", "list", "null"])
@pytest.mark.parametrize("path", list(PATHS))
def test_a_reply_that_is_not_text_is_counted_never_cached_and_asked_again(tmp_path, path, content):
    run, good = PATHS[path]
    with FakeServer(lambda body, n: Act(content)) as server:
        failed, judged, requests = run(server, tmp_path)
        assert len(server.calls) == requests  # not retried: a malformed reply, counted
    assert (failed, judged) == (requests, 0)
    assert cached_rows(tmp_path / "out" / "cache.sqlite") == 0
    # The judge is fixed: the rerun asks every question again and judges them all.
    with FakeServer(lambda body, n: Act(good)) as server:
        failed, judged, requests = run(server, tmp_path)
        assert len(server.calls) == requests
    assert (failed, judged) == (0, requests)
    assert cached_rows(tmp_path / "out" / "cache.sqlite") == requests


def test_mt_bench_cli_counts_malformed_replies_without_a_traceback(tmp_path, capsys):
    q, ref, files = _mtbench_files(tmp_path)
    with FakeServer(lambda body, n: Act(7)) as server:
        conf = tmp_path / "judge.yaml"
        conf.write_text(f"backend: openai\nmodel: judge-x\nbase_url: {server.url}\n")
        rc = main(["mt-bench", "--answers", str(files[0]), "--judge", str(conf),
                   "--questions", str(q), "--reference", str(ref), "--out", str(tmp_path / "o")])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 1 and "Traceback" not in err
    assert "5 calls failed (first: malformed response (message content is 7, not text))" in err


@pytest.mark.parametrize("path", ["pairwise", "mt-bench single", "back-translation rating"])
def test_a_cached_entry_that_is_not_a_reply_is_asked_again(tmp_path, path):
    """A cache written before replies were checked may hold a number as a reply's text: it is
    not served (no crash), the call is made again and its sound reply replaces the entry."""
    run, good = PATHS[path]
    with FakeServer(lambda body, n: Act(good)) as server:
        _, judged, requests = run(server, tmp_path)
    assert judged == requests
    db = sqlite3.connect(tmp_path / "out" / "cache.sqlite")
    db.execute("UPDATE replies SET value = ?", (json.dumps({"text": 7}),))
    db.commit()
    db.close()
    for made in (tmp_path / "out").rglob("*.jsonl"):  # MT-Bench skips what its files hold
        made.unlink()
    with FakeServer(lambda body, n: Act(good)) as server:
        failed, judged, requests = run(server, tmp_path)
        assert len(server.calls) == requests
    assert (failed, judged) == (0, requests)
