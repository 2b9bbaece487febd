"""Checkpoint choice when the judge cannot separate epochs: the judge-free checks decide, and the
selection says which rule did."""

from __future__ import annotations

import importlib
import json

from limakit.core.files import write_jsonl
from limakit.evaluation import JudgeConfig, select_checkpoint
from limakit.evaluation.checkpoint_choice import choose
from limakit.records.example import Example, Message
from tests.evaluation.fake_server import Act, FakeServer
from tests.evaluation.helpers import answer


def _row(epoch, score, ci, eot=1.0, rep=0.0, looping=0.0):
    checks = {"eot_share": eot, "repetition": rep, "repetitive_share": looping}
    return {"epoch": epoch, "score": score, "score_ci": ci, "checks": checks}


def test_a_clear_judge_decides():
    rows = [_row(1, 0.2, [0.1, 0.3], eot=1.0), _row(2, 0.9, [0.8, 1.0], eot=0.0)]
    assert choose(rows)[:2] == (2, "judge")
    assert choose(rows[:1])[:2] == (1, "only epoch")


def test_overlapping_intervals_go_to_the_checks():
    # A judge at chance: every epoch scores 0.5 and the intervals overlap.
    rows = [
        _row(1, 0.5, [0.0, 1.0], eot=0.5),
        _row(2, 0.5, [0.0, 1.0], eot=1.0, rep=0.10),
        _row(3, 0.5, [0.0, 1.0], eot=1.0, rep=0.02),
    ]
    epoch, rule, why = choose(rows)
    assert (epoch, rule) == (3, "checks")
    assert "cannot separate epochs 1, 2, 3" in why and "100% of the answers end at EOT" in why
    # An epoch whose interval is clear below the best one's is out, whatever its checks.
    rows = [_row(1, 0.1, [0.0, 0.2], eot=1.0), _row(2, 0.8, [0.5, 1.0], eot=0.5),
            _row(3, 0.7, [0.4, 0.9], eot=0.9)]  # fmt: skip
    assert choose(rows)[:2] == (3, "checks")


def test_checks_tied_then_judge_score_then_earliest_epoch():
    rows = [_row(1, 0.4, [0.0, 1.0]), _row(2, 0.6, [0.0, 1.0]), _row(3, 0.6, [0.0, 1.0])]
    assert choose(rows)[:2] == (2, "tie rule")
    rows[2]["score"] = 0.7
    assert choose(rows)[:2] == (3, "judge score")
    # Repetition counts to 0.01 only: noise in the third decimal decides nothing.
    rows = [_row(1, 0.5, [0.0, 1.0], rep=0.021), _row(2, 0.5, [0.0, 1.0], rep=0.018)]
    assert choose(rows)[:2] == (1, "tie rule")
    rows = [_row(1, 0.5, [0.0, 1.0], eot=0.5), _row(2, 0.4, [0.0, 1.0]), _row(3, 0.6, [0.0, 1.0])]
    assert choose(rows)[:2] == (3, "checks, then judge score")


def _generator(stops: dict[int, str]):
    """Epoch N answers every prompt alike; its answers end with ``stops[N]`` (eot or length)."""

    def generate_answers(model, prompts, *, samples=1, seed=0, config=None, out=None, **kw):
        epoch = int(str(model).rstrip("/").rsplit("-", 1)[-1])
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
    write_jsonl(dev, [answer(i, "reference answer", "ref") for i in range(2)])
    gen = importlib.import_module("limakit.generation")
    fake = _generator({1: "length", 2: "eot", 3: "eot"})
    monkeypatch.setattr(gen, "generate_answers", fake, raising=False)
    with FakeServer(lambda body, n: Act("[[A]]")) as server:  # always the first: all ties
        cfg = JudgeConfig(backend="openai", model="judge", base_url=server.url)
        res = select_checkpoint(run, dev, cfg, epochs=[1, 2, 3])
    assert [r["score"] for r in res["table"]] == [0.5, 0.5, 0.5]
    # Before: epoch 1 by the tie rule, though its answers never reached EOT.
    assert res["chosen"] == 2 and res["decided_by"] == "checks, then tie rule"
    sel = json.loads((run / "select" / "selection.json").read_text())
    assert sel["decided_by"] == res["decided_by"] and sel["table"][0]["checks"]["eot_share"] == 0
    md = (run / "select" / "selection.md").read_text()
    assert "Decided by the judge-free checks, then the tie rule" in md and "stopped at EOT" in md
    assert "favour epochs 2, 3" in md
