"""Checkpoint choice when the judge cannot separate epochs: the judge-free checks decide, and the
selection says which rule did."""

from __future__ import annotations

import importlib
import json

from limakit.core.files import write_jsonl
from limakit.evaluation import JudgeConfig, select_checkpoint
from limakit.evaluation.checkpoint_choice import choose, default_epoch
from limakit.records.example import Example, Message
from tests.evaluation.fake_server import Act, FakeServer
from tests.evaluation.helpers import answer


def _row(epoch, score, ci, ends=(1.0, [1.0, 1.0]), n=20):
    checks = {"ends_turn": {"value": ends[0], "ci": ends[1], "n": n}, "repetition": 0.0,
              "looping": 0.0}  # fmt: skip
    return {"epoch": epoch, "score": score, "score_ci": ci, "checks": checks, "n": n}


def test_a_clear_judge_decides():
    rows = [_row(1, 0.2, [0.1, 0.3]), _row(2, 0.9, [0.8, 1.0], ends=(0.0, [0.0, 0.0]))]
    assert choose(rows)[:2] == (2, "judge")
    assert choose(rows[:1])[:2] == (1, "only epoch")


def test_overlapping_intervals_go_to_the_checks_when_they_separate():
    # A judge at chance: every epoch scores 0.5 and the intervals overlap.
    rows = [
        _row(1, 0.5, [0.0, 1.0], ends=(0.3, [0.1, 0.5])),
        _row(2, 0.5, [0.0, 1.0], ends=(1.0, [0.9, 1.0])),
        _row(3, 0.5, [0.0, 1.0], ends=(0.5, [0.3, 0.7])),
    ]
    epoch, rule, why = choose(rows)
    assert (epoch, rule) == (2, "checks")
    assert "cannot separate epochs 1, 2, 3" in why and "ends 100% of its answers" in why
    # An epoch whose judge interval is clear below the best one's is out, whatever its checks.
    rows = [_row(1, 0.1, [0.0, 0.2], ends=(1.0, [1.0, 1.0])),
            _row(2, 0.8, [0.5, 1.0], ends=(0.2, [0.0, 0.4])),
            _row(3, 0.7, [0.4, 0.9], ends=(0.9, [0.7, 1.0]))]  # fmt: skip
    assert choose(rows)[:2] == (3, "checks")


def test_nothing_separates_the_epochs_so_the_choice_is_undecided():
    rows = [_row(e, 0.5, [0.2, 0.8], ends=(0.5, [0.3, 0.7])) for e in range(5, 12)]
    rows[3]["score"], rows[3]["checks"]["ends_turn"]["value"] = 0.6, 0.6  # better, not clearly
    epoch, rule, why = choose(rows)
    assert (epoch, rule) == (10, "undecided")  # the last epoch of the paper's 5-10 window
    assert "nor can the judge-free checks" in why and "default epoch 10 is kept" in why
    short = [_row(e, 0.5, [0.2, 0.8]) for e in (1, 2, 3)]
    assert choose(short)[:2] == (3, "undecided")  # a shorter run: its last epoch
    assert default_epoch([1, 2, 3]) == 3 and default_epoch([5, 10, 12]) == 10


def test_no_choice_is_made_on_fewer_than_20_answers():
    rows = [_row(1, 0.0, [0.0, 0.0], n=19), _row(2, 1.0, [1.0, 1.0], n=19),
            _row(3, 0.1, [0.0, 0.2], n=19)]  # fmt: skip
    epoch, rule, why = choose(rows)
    assert (epoch, rule) == (3, "undecided") and "19 dev answers per epoch" in why
    for r in rows:
        r["n"] = 20
    assert choose(rows)[:2] == (2, "judge")


def _generator(stops: dict[int, str]):
    """Epoch N answers every prompt alike; its answers end with ``stops[N]`` (eot or length)."""

    def generate_answers(model, prompts, *, samples=1, seed=0, config=None, out=None, **kw):
        epoch = int(kw["model_name"].rsplit("-", 1)[-1])  # the checkpoint's name: epoch-N
        rows = []
        for p in prompts:
            for k in range(samples):
                meta = {"sample": k, "model": f"epoch-{epoch}", "stop": stops[epoch]}
                rows.append(Example(p.messages + [Message("assistant", "an answer")], p.source,
                                    p.id, meta))  # fmt: skip
        write_jsonl(out, [r.to_dict() for r in rows])
        return rows

    return generate_answers


def test_a_judge_at_chance_leaves_the_choice_to_the_checks(tmp_path, monkeypatch):
    run = tmp_path / "run"
    for epoch in (1, 2, 3):
        (run / "checkpoints" / f"epoch-{epoch}").mkdir(parents=True)
        (run / "checkpoints" / f"epoch-{epoch}" / "config.json").write_text("{}")
    dev = tmp_path / "dev.jsonl"
    write_jsonl(dev, [answer(i, "reference answer", "ref") for i in range(20)])
    gen = importlib.import_module("limakit.generation")
    fake = _generator({1: "length", 2: "eot", 3: "length"})
    monkeypatch.setattr(gen, "generate_answers", fake, raising=False)
    with FakeServer(lambda body, n: Act("[[A]]")) as server:  # always the first: all ties
        cfg = JudgeConfig(backend="openai", model="judge", base_url=server.url)
        res = select_checkpoint(run, dev, cfg, epochs=[1, 2, 3])
    assert [r["score"] for r in res["table"]] == [0.5, 0.5, 0.5]
    # Epoch 2 is the only one whose answers reach the end of turn.
    assert res["chosen"] == 2 and res["decided_by"] == "checks"
    sel = json.loads((run / "select" / "selection.json").read_text())
    assert sel["decided_by"] == "checks"
    assert sel["table"][0]["checks"]["ends_turn"] == {"value": 0.0, "ci": [0.0, 0.0], "n": 20}
    md = (run / "select" / "selection.md").read_text()
    assert "Decided by the judge-free checks" in md and "ends turn [95% CI]" in md
    assert "| 2 **(chosen)** |" in md
