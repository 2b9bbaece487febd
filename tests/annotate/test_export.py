"""People's verdicts leave in the LLM judge's format, on the pairs the judge would compare."""

from __future__ import annotations

import json

import pytest

from limakit.annotate import db
from limakit.annotate.export import export
from limakit.annotate.server import load_set
from limakit.cli import main
from limakit.core.errors import LimaError
from limakit.core.files import write_jsonl
from limakit.evaluation import JudgeConfig, judge_pairwise
from limakit.evaluation.pairs import pair_answers
from tests.evaluation.fake_server import FakeServer, prefer_marked
from tests.evaluation.helpers import answer


def answer_files(tmp_path):
    """A has p0-p4 (p2 twice: samples 0 and 1); B lacks p4 and has an extra p7."""
    a = [
        answer(i, t, "model-a") for i, t in enumerate(["GOOD 0", "weak 1", "GOOD 2", "GOOD 3", "x"])
    ]
    a.insert(3, answer(2, "GOOD 2b", "model-a", sample=1))
    b = [answer(i, "weak", "model-b") for i in (0, 1, 2, 3)]
    b[1] = answer(1, "GOOD b1", "model-b")
    b.append(answer(2, "weak 2b", "model-b", sample=1))
    b.append(answer(7, "only in B", "model-b"))
    write_jsonl(tmp_path / "a.jsonl", a)
    write_jsonl(tmp_path / "b.jsonl", b)
    return tmp_path / "a.jsonl", tmp_path / "b.jsonl"


def signed_in(conn, name: str) -> db.User:
    return db.session_user(conn, db.login(conn, db.add_user(conn, name)))


def annotate(path, votes: dict[str, dict[str, str]]) -> None:
    """``votes[person]["p3"]`` (or ``"p2/1"`` for sample 1): the model they prefer, a/b/tie."""
    conn = db.connect(path)
    s = db.list_sets(conn)[0]
    for name, prefs in votes.items():
        u = signed_in(conn, name)
        while (pair := db.next_pair(conn, u, s)) is not None:
            key = pair.prompt_id + (f"/{pair.sample}" if pair.sample else "")
            if key not in prefs:
                break
            pref = prefs[key]
            label = "C" if pref == "tie" else "A" if (pref == "a") != pair.swapped else "B"
            db.record(conn, u, s, pair.id, label, f"{name} on {key}")
    conn.close()


@pytest.fixture
def judged(tmp_path):
    a, b = answer_files(tmp_path)
    with FakeServer(prefer_marked) as server:
        cfg = JudgeConfig(backend="openai", model="judge", base_url=server.url)
        judge_pairwise(a, b, cfg, tmp_path / "judge")
    return a, b, tmp_path / "judge"


def test_pairs_are_the_judges_pairs_in_the_judges_order(judged):
    a, b, judge_dir = judged
    ps = pair_answers(a, b)
    rows = [json.loads(x) for x in (judge_dir / "verdicts.jsonl").read_text().splitlines()]
    assert [(p.id, p.sample) for p in ps.pairs] == [(r["id"], r["sample"]) for r in rows]
    assert [(p.category, len(p.answer_a), len(p.answer_b)) for p in ps.pairs] == [
        (r["category"], r["len_a"], r["len_b"]) for r in rows
    ]
    assert ps.only_a == [("p4", 0)] and ps.only_b == [("p7", 0)]
    assert ps.pairs[0].prompt == "Question 0: how do I do thing 0?"


def test_pairing_refuses_what_the_judge_refuses(tmp_path):
    write_jsonl(tmp_path / "a.jsonl", [answer(0, "x", "m")])
    other = answer(0, "y", "n")
    other["messages"][0]["content"] = "a different question"
    write_jsonl(tmp_path / "b.jsonl", [other])
    with pytest.raises(LimaError, match="different prompts"):
        pair_answers(tmp_path / "a.jsonl", tmp_path / "b.jsonl")


def test_export_has_the_judges_format_and_report_reads_it(judged, tmp_path, capsys):
    a, b, judge_dir = judged
    path = tmp_path / "ann.sqlite"
    load_set(path, a, b)
    annotate(path, {
        "ann": {"p0": "a", "p1": "b", "p2": "a", "p2/1": "a", "p3": "tie"},
        "bob": {"p0": "a", "p1": "b", "p2": "tie", "p2/1": "b", "p3": "a"},
    })  # fmt: skip
    out, summary = export(path, tmp_path / "people" / "verdicts.jsonl")
    people = [json.loads(x) for x in out.read_text().splitlines()]
    judge = [json.loads(x) for x in (judge_dir / "verdicts.jsonl").read_text().splitlines()]
    assert len(people) == 10
    for row in people:
        assert set(judge[0]) <= set(row)
        shown = row["a_then_b"] or row["b_then_a"]
        assert set(shown) == set(judge[0]["a_then_b"]) and shown["label"] in ("A", "B", "C")
        assert row["result"] in ("win", "tie", "lose") and row["consistent"] is None
    lengths = {(r["id"], r["sample"]): (r["len_a"], r["len_b"]) for r in judge}
    assert all((r["len_a"], r["len_b"]) == lengths[(r["id"], r["sample"])] for r in people)
    ann_p1 = next(r for r in people if r["annotator"] == "ann" and r["id"] == "p1")
    assert ann_p1["result"] == "lose" and ann_p1["comment"] == "ann on p1"
    judge_summary = json.loads((judge_dir / "summary.json").read_text())
    assert set(judge_summary) <= set(summary)
    # majorities: p0 a, p1 b, p2 split (tie), p2/1 split, p3 split
    assert (summary["n"], summary["win"], summary["lose"], summary["tie"]) == (5, 0.2, 0.2, 0.6)
    assert summary["annotators"] == {"ann": 5, "bob": 5} and summary["unannotated"] == 0
    assert summary["unmatched"]["a"] == 1 and summary["unmatched"]["b"] == 1

    assert main(["report", str(judge_dir), str(out.parent), "--out", str(tmp_path / "r")]) == 0
    printed = capsys.readouterr().out
    text = (tmp_path / "r" / "report.md").read_text()
    assert "## Agreement between people and judges" in text
    # ann vs bob: p0 1, p1 1, p2 0.5, p2/1 0, p3 0.5 -> 60%
    assert (
        "| model-a vs model-b (people) | annotators with each other (2 people) | 5 | 5 | 60.0%"
        in text
    )
    # the judge (prefers GOOD): a, b, a, a, a; majority a, b, tie, tie, tie -> 3.5 / 5
    assert "| annotators' majority vs model-a vs model-b (judge) | 5 | 5 | 70.0%" in text
    assert "agreement, model-a vs model-b (people), annotators: 60.0%" in printed


def test_export_needs_a_set_name_when_there_are_several(judged, tmp_path):
    a, b, _ = judged
    path = tmp_path / "two.sqlite"
    load_set(path, a, b, name="first")
    load_set(path, b, a, name="second")
    with pytest.raises(LimaError, match="holds 2 sets"):
        export(path, tmp_path / "x")
    verdicts, summary = export(path, tmp_path / "x", "second")
    assert verdicts == tmp_path / "x" / "verdicts.jsonl" and summary["a"]["model"] == "model-b"


def test_reloading_a_set_is_a_no_op_and_other_answers_need_a_new_name(judged, tmp_path):
    a, b, _ = judged
    path = tmp_path / "s.sqlite"
    first = load_set(path, a, b)[0]
    assert load_set(path, a, b)[0] == first
    with pytest.raises(LimaError, match="already holds other answers"):
        load_set(path, a, a, name=first.name)


def test_cli_add_user_prints_a_one_time_link(judged, tmp_path, capsys):
    a, b, _ = judged
    path = tmp_path / "cli.sqlite"
    load_set(path, a, b)
    assert main(["annotate", "add-user", "eve", "--db", str(path), "--url", "http://h:9/"]) == 0
    link = capsys.readouterr().out.strip()
    assert link.startswith("http://h:9/login?token=")
    conn = db.connect(path)
    token = link.split("=", 1)[1]
    assert db.login(conn, token) is not None and db.login(conn, token) is None
    conn.close()


def test_sides_are_swapped_per_person_and_recorded(judged, tmp_path):
    a, b, _ = judged
    path = tmp_path / "swap.sqlite"
    load_set(path, a, b)
    conn = db.connect(path)
    s = db.list_sets(conn)[0]
    people = [signed_in(conn, f"p{i}") for i in range(8)]
    first = [db.next_pair(conn, u, s) for u in people]
    assert {p.swapped for p in first} == {True, False}  # 8 people: both sides occur
    for u, p in zip(people, first):
        assert p.left == ("weak" if p.swapped else "GOOD 0")
        db.record(conn, u, s, p.id, "A", "")
    stored = {r["annotator"]: bool(r["swapped"]) for r in db.live_verdicts(conn, s.id)}
    assert stored == {u.name: p.swapped for u, p in zip(people, first)}
    conn.close()
