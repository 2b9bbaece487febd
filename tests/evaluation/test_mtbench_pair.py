"""`lima mt-bench --mode pairwise-baseline|pairwise-all`: both orders, FastChat's pair prompts,
its file layout and its counting, against a real local judge server."""

from __future__ import annotations

import json

import pytest

from limakit.core.errors import LimaError
from limakit.core.files import write_jsonl
from limakit.evaluation import JudgeConfig
from limakit.evaluation.mtbench import pairwise as mp
from tests.evaluation.fake_server import Act, FakeServer
from tests.evaluation.test_mtbench import QUESTIONS, REFERENCE, fastchat_loaders

# Which (question, turn) answers of each model hold the word GOOD the judge looks for.
GOOD = {
    "good-model": {(81, 1), (81, 2), (111, 1), (111, 2), (131, 1)},
    "gpt-3.5-turbo": {(81, 1), (81, 2)},
    "bad-model": set(),
}


def sections(body: dict) -> tuple[str, str]:
    """Assistant A's and assistant B's parts of a pair prompt (any of FastChat's four)."""
    user = body["messages"][-1]["content"]
    a, b = user.index("Assistant A"), user.index("Assistant B")
    assert a < b
    return user[a:b], user[b:]


def prefer_good(body: dict, n: int) -> Act:
    """A fair judge: the side whose answer says GOOD wins; both or neither is a tie."""
    a, b = ("GOOD" in part for part in sections(body))
    return Act("Because.\n[[A]]" if a and not b else "Because.\n[[B]]" if b and not a else "[[C]]")


def first_shown(body: dict, n: int) -> Act:
    return Act("A, whatever it is. [[A]]")  # pure position bias


@pytest.fixture
def setup(tmp_path):
    q = tmp_path / "question.jsonl"
    write_jsonl(q, QUESTIONS)
    ref = tmp_path / "ref.jsonl"
    write_jsonl(ref, REFERENCE)
    files = []
    for model, good in GOOD.items():
        path = tmp_path / "answers" / f"{model}.jsonl"
        rows = [
            {
                "question_id": x["question_id"],
                "answer_id": "a",
                "model_id": model,
                "choices": [
                    {
                        "index": 0,
                        "turns": [
                            f"{model} answer {t} {'GOOD' if (x['question_id'], t) in good else ''}"
                            for t in range(1, len(x["turns"]) + 1)
                        ],
                    }
                ],
                "tstamp": 0,
            }
            for x in QUESTIONS
        ]
        write_jsonl(path, rows)
        files.append(path)
    return tmp_path, q, ref, files


def _run(setup, server, mode="pairwise-baseline", files=None, **kw):
    tmp_path, q, ref, all_files = setup
    judge = JudgeConfig(backend="openai", model="judge-x", base_url=server.url, bootstrap=50)
    return mp.run_mtbench_pairwise(
        tmp_path / "out",
        judge=judge,
        mode=mode,
        questions_path=q,
        reference_path=ref,
        other_answers=files or all_files,
        progress=False,
        **kw,
    )


def test_pairwise_baseline_both_orders_prompts_and_fastchat_counting(setup):
    with FakeServer(prefer_good) as server:
        r = _run(setup, server)
        calls = list(server.calls)
    # 2 models x (2 + 2 + 1 turns) x 2 orders.
    assert len(calls) == 20 and r["counts"]["judged"] == 10 and r["counts"]["unparsable"] == 0
    s = r["pairwise"]
    assert list(s) == ["good-model", "bad-model"]  # best adjusted win rate first
    assert (s["good-model"]["win"], s["good-model"]["loss"], s["good-model"]["tie"]) == (3, 0, 2)
    assert (s["bad-model"]["win"], s["bad-model"]["loss"], s["bad-model"]["tie"]) == (0, 2, 3)
    assert s["good-model"]["win_rate"] == 0.6 and s["good-model"]["win_rate_adjusted"] == 0.8
    assert s["bad-model"]["loss_rate"] == 0.4 and s["bad-model"]["win_rate_adjusted"] == 0.3
    lo, hi = s["good-model"]["win_rate_adjusted_ci"]
    assert lo <= 0.8 <= hi
    out = setup[0] / "out"
    jfile = out / "model_judgment" / "judge-x_pair.jsonl"
    rows = [json.loads(line) for line in jfile.read_text().splitlines()]
    assert len(rows) == 10
    assert set(rows[0]) == {
        "question_id", "model_1", "model_2", "g1_winner", "g2_winner", "judge",
        "g1_user_prompt", "g1_judgment", "g2_user_prompt", "g2_judgment", "turn", "tstamp",
    }  # fmt: skip
    assert {row["model_2"] for row in rows} == {"gpt-3.5-turbo"}  # the baseline is model 2
    names = {(row["question_id"], row["turn"]): row["judge"][1] for row in rows}
    assert names == {
        (81, 1): "pair-v2",
        (81, 2): "pair-v2-multi-turn",
        (111, 1): "pair-math-v1",
        (111, 2): "pair-math-v1-multi-turn",
        (131, 1): "pair-v2",
    }
    row = next(
        r
        for r in rows
        if r["model_1"] == "good-model" and (r["question_id"], r["turn"]) == (111, 2)
    )
    assert row["g1_winner"] == row["g2_winner"] == "model_1"  # the judge saw it in both orders
    g1_a, _ = sections({"messages": [{"content": row["g1_user_prompt"]}]})
    g2_a, _ = sections({"messages": [{"content": row["g2_user_prompt"]}]})
    assert "good-model answer" in g1_a and "gpt-3.5-turbo answer" in g2_a  # game 2 swaps
    assert "REF-ONE 4" in row["g1_user_prompt"] and "REF-TWO 6" in row["g2_user_prompt"]
    assert (out / "pairwise-judge-x.png").stat().st_size > 0
    saved = json.loads((out / "summary_pair.json").read_text())
    assert saved["mode"] == "pairwise-baseline" and saved["pairwise"] == json.loads(json.dumps(s))
    # FastChat's own loader reads the file: the winners it resolves agree with ours.
    fc = fastchat_loaders_with_pairs()
    loaded = fc["load_pairwise_model_judgments"](str(jfile))
    games = loaded[("judge-x", "pair-v2")]
    assert games[(81, "bad-model", "gpt-3.5-turbo")]["winners"] == ("model_2",)
    # A rerun asks for nothing; a line cut by a kill is asked again (its two games).
    with FakeServer(prefer_good) as server:
        again = _run(setup, server)
        assert server.calls == [] and again["counts"]["skipped"] == 10
    lines = jfile.read_text().splitlines()
    jfile.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][:30])
    (out / "cache.sqlite").unlink()
    with FakeServer(prefer_good) as server:
        third = _run(setup, server)
        assert len(server.calls) == 2
    assert third["counts"]["judged"] == 1 and len(jfile.read_text().splitlines()) == 10
    assert third["pairwise"] == s


def fastchat_loaders_with_pairs() -> dict:
    """FastChat's pair-judgment loader (with the helper it calls), from its own common.py."""
    import ast
    import warnings

    from limakit.evaluation.mtbench.files import data_dir

    path = data_dir().parent / "common.py"
    with warnings.catch_warnings():  # its regexes are plain strings with backslashes
        warnings.simplefilter("ignore")
        tree = ast.parse(path.read_text())
    wanted = {
        "load_pairwise_model_judgments",
        "normalize_game_key_dict",
        "normalize_game_key_single",
    }
    nodes = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name in wanted]
    assert {n.name for n in nodes} == wanted
    ns = {"json": json}
    exec(compile(ast.Module(body=nodes, type_ignores=[]), str(path), "exec"), ns)
    return {**fastchat_loaders(), **ns}


def test_a_position_biased_judge_gets_ties_and_unparsable_games_are_left_out(setup):
    with FakeServer(first_shown) as server:
        r = _run(setup, server, files=setup[3][:2])  # good-model against the baseline
    s = r["pairwise"]["good-model"]
    assert (s["win"], s["loss"], s["tie"]) == (0, 0, 5)  # A in both orders: they disagree
    assert s["win_rate_adjusted"] == 0.5

    def every_fourth_unparsable(body: dict, n: int) -> Act:
        return Act("I cannot tell.") if n % 4 == 3 else prefer_good(body, n)

    tmp = setup[0] / "other"
    tmp.mkdir()
    with FakeServer(every_fourth_unparsable) as server:
        judge = JudgeConfig(backend="openai", model="judge-y", base_url=server.url, bootstrap=50)
        r = mp.run_mtbench_pairwise(
            tmp, judge=judge, questions_path=setup[1], reference_path=setup[2],
            other_answers=setup[3][:2], progress=False,
        )  # fmt: skip
    rows = [json.loads(x) for x in (tmp / "model_judgment" / "judge-y_pair.jsonl").open()]
    errors = sum("error" in (x["g1_winner"], x["g2_winner"]) for x in rows)
    assert r["counts"]["unparsable"] >= errors > 0
    s = r["pairwise"]["good-model"]
    assert s["left_out"] == errors and s["win"] + s["loss"] + s["tie"] == 5 - errors


def test_pairwise_all_judges_every_pair_and_the_cli_prints_the_table(setup, capsys):
    from limakit.cli import main

    tmp_path, q, ref, files = setup
    with FakeServer(prefer_good) as server:
        cfg = tmp_path / "judge.yaml"
        cfg.write_text(f"backend: openai\nmodel: judge-z\nbase_url: {server.url}\nbootstrap: 50\n")
        code = main(
            ["mt-bench", "--mode", "pairwise-all", "--answers", *map(str, files),
             "--questions", str(q), "--reference", str(ref), "--judge", str(cfg),
             "--out", str(tmp_path / "all")]
        )  # fmt: skip
        assert len(server.calls) == 3 * 5 * 2  # 3 pairs x 5 (question, turn) x 2 orders
    assert code == 0
    out = capsys.readouterr().out
    assert "MT-Bench pairwise, against each other" in out
    rows = [
        line.split() for line in out.splitlines() if line.strip().startswith(("good", "bad", "gpt"))
    ]
    assert [r[0] for r in rows] == ["good-model", "gpt-3.5-turbo", "bad-model"]
    # good-model: 3 wins + 2 ties against the baseline, 5 wins against bad-model.
    assert rows[0][1:4] == ["8", "0", "2"]


def test_a_missing_baseline_or_a_single_model_is_named(setup):
    with pytest.raises(LimaError, match=r"baseline 'gpt-4' has no answers.*gpt-4\.jsonl"):
        mp.pairs_of(["a", "b"], "pairwise-baseline", "gpt-4")
    with pytest.raises(LimaError, match="needs answers of two models"):
        mp.pairs_of(["a"], "pairwise-all")
    assert mp.pairs_of(["a", "b", "c"], "pairwise-all") == [("a", "b"), ("a", "c"), ("b", "c")]
    assert mp.pairs_of(["a", "base"], "pairwise-baseline", "base") == [("a", "base")]


def test_a_game_is_the_same_whichever_model_comes_first(setup, monkeypatch):
    """(a, baseline) judged in one run is not judged again, nor counted twice, as (baseline, a)
    in a later run that lists the files the other way round."""
    tmp_path, q, ref, files = setup
    good, base = files[0], files[1]
    with FakeServer(prefer_good) as server:
        first = _run(setup, server, files=[good, base])
        assert len(server.calls) == 10
    with FakeServer(prefer_good) as server:
        again = _run(setup, server, mode="pairwise-all", files=[base, good])
        assert server.calls == [] and again["counts"]["skipped"] == 5
    assert again["pairwise"]["good-model"] == first["pairwise"]["good-model"]
    # Rows written both ways round (as two tools may) count once, the last one written.
    jfile = tmp_path / "out" / "model_judgment" / "judge-x_pair.jsonl"
    rows = [json.loads(x) for x in jfile.read_text().splitlines()]
    flipped = dict(rows[0], model_1=rows[0]["model_2"], model_2=rows[0]["model_1"])
    flipped["g1_winner"] = flipped["g2_winner"] = "model_1"  # now the baseline wins it
    write_jsonl(jfile, rows + [flipped])
    s = mp.summarise_pairwise(jfile, QUESTIONS, "pairwise-baseline", resamples=50)["good-model"]
    assert s["win"] + s["loss"] + s["tie"] == 5 and s["loss"] == 1


def test_the_baseline_is_checked_before_any_answering(setup, monkeypatch):
    def no_answering(*a, **k):
        raise AssertionError("answered before the pairs were checked")

    monkeypatch.setattr(mp, "collect_answers", no_answering)
    judge = JudgeConfig(backend="openai", model="j", base_url="http://127.0.0.1:9/v1")
    with pytest.raises(LimaError, match="baseline 'gpt-3.5-turbo' has no answers"):
        mp.run_mtbench_pairwise(
            setup[0] / "o", judge=judge, model="some/checkpoint", other_answers=[setup[3][0]]
        )


def test_turn_two_is_judged_only_for_two_turn_questions_as_fastchat():
    from limakit.evaluation.mtbench.files import default_paths, read_judge_prompts
    from limakit.evaluation.mtbench.matches import pair_matches

    q = [{"question_id": 1, "category": "writing", "turns": ["a", "b", "c"]}]
    ans = {m: {1: {"choices": [{"turns": ["x", "y", "z"]}]}} for m in ("m", "n")}
    prompts = read_judge_prompts(default_paths()["judge_prompts"])
    matches = pair_matches(q, ans, prompts, {}, [("m", "n")])
    assert [(m.turn, m.game) for m in matches] == [(1, 1), (1, 2)]
