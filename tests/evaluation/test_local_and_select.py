"""The local (next-token probability) judge and checkpoint selection."""

from __future__ import annotations

import importlib
import json
import shutil

import pytest

from limakit.cli import main
from limakit.core.files import write_jsonl
from limakit.evaluation import JudgeConfig, judge_likert, judge_pairwise
from limakit.records.example import Example, Message
from tests.evaluation.fake_server import Act, FakeServer, prefer_marked
from tests.evaluation.helpers import answer, write_pair


def test_local_judge_reads_label_probabilities(tmp_path, tiny_model_dir):
    a, b = write_pair(tmp_path, ["first answer", "second"], ["other answer", "another"])
    cfg = JudgeConfig(backend="local", model=tiny_model_dir)
    s = judge_pairwise(a, b, cfg, tmp_path / "out")
    assert s["n"] == 2 and s["invalid"] == 0 and s["usage"]["calls"] == 4
    rows = [json.loads(x) for x in (tmp_path / "out" / "verdicts.jsonl").read_text().splitlines()]
    for r in rows:
        for order in ("a_then_b", "b_then_a"):
            probs = r[order]["probs"]
            assert set(probs) == {"A", "B", "C"} and sum(probs.values()) == pytest.approx(
                1, abs=1e-4
            )
            assert r[order]["label"] == max(probs, key=probs.get)
    again = judge_pairwise(a, b, cfg, tmp_path / "out")  # cached: the model is not even loaded
    assert again["usage"]["calls"] == 0 and again["win"] == s["win"]
    lk = judge_likert(a, cfg, tmp_path / "likert")
    assert lk["invalid"] == 0 and 1 <= lk["mean"] <= 6


def test_local_judge_batches_give_the_one_at_a_time_verdicts(tmp_path, tiny_model_dir, monkeypatch):
    from limakit.judging.local import LocalJudge

    texts = ["short", "a much longer answer " * 12, "medium length answer " * 3, "x", "y " * 30]
    a, b = write_pair(tmp_path, texts, list(reversed(texts)))
    batches = []
    real = LocalJudge.choose_batch
    monkeypatch.setattr(
        LocalJudge,
        "choose_batch",
        lambda self, reqs, labels: batches.append(len(reqs)) or real(self, reqs, labels),
    )
    cfg = JudgeConfig(backend="local", model=tiny_model_dir, batch_size=4)
    s = judge_pairwise(a, b, cfg, tmp_path / "batched")
    assert s["usage"]["calls"] == 10 and batches == [4, 4, 2]  # 10 judgements, 3 passes
    batches.clear()
    one = judge_pairwise(a, b, cfg.model_copy(update={"batch_size": 1}), tmp_path / "single")
    assert batches == [1] * 10
    rows = {
        name: [json.loads(x) for x in (tmp_path / name / "verdicts.jsonl").read_text().splitlines()]
        for name in ("batched", "single")
    }
    for x, y in zip(rows["batched"], rows["single"], strict=True):
        for order in ("a_then_b", "b_then_a"):
            assert x[order]["label"] == y[order]["label"]
            for label, p in x[order]["probs"].items():
                assert p == pytest.approx(y[order]["probs"][label], abs=1e-4)
    assert one["win"] == s["win"] and one["tie"] == s["tie"]


def _fake_generate(quality: dict[int, int]):
    """A stand-in generator: epoch N answers GOOD for the first quality[N] prompts."""
    calls = []

    def generate_answers(  # noqa: PLR0913 - stands in for the real one: its parameters
        model,
        prompts,
        *,
        samples=1,
        seed=0,
        config=None,
        out=None,
        batch_size=16,
        model_name=None,
    ):
        epoch = int(model_name.rsplit("-", 1)[-1])  # the checkpoint's name: epoch-N
        calls.append(epoch)
        generate_answers.received = {"config": config}
        rows = []
        for i, p in enumerate(prompts):
            for k in range(samples):
                text = "GOOD answer" if i < quality[epoch] else "weak answer"
                meta = {"sample": k, "model": model_name, "stop": "eot", "new_tokens": 2}
                rows.append(
                    Example(p.messages + [Message("assistant", text)], p.source, p.id, meta)
                )
        write_jsonl(out, [r.to_dict() for r in rows])
        return rows

    return generate_answers, calls


def test_select_chooses_the_best_epoch(tmp_path, monkeypatch):
    run = tmp_path / "run"
    for epoch in (5, 6, 7, 9):  # 8 and 10 missing: skipped with a note
        (run / "checkpoints" / f"epoch-{epoch}").mkdir(parents=True)
        (run / "checkpoints" / f"epoch-{epoch}" / "config.json").write_text("{}")
    dev = tmp_path / "dev.jsonl"
    write_jsonl(dev, [answer(i, "reference answer", "ref") for i in range(20)])  # 20: enough
    fake, calls = _fake_generate({5: 2, 6: 20, 7: 4, 9: 8})
    gen = importlib.import_module("limakit.generation")
    monkeypatch.setattr(gen, "generate_answers", fake, raising=False)
    batch = importlib.import_module("limakit.generation.batch")
    devices, real_loader = [], batch.model_for_answers

    def loader(name, **kw):
        devices.append(kw.get("device"))
        return real_loader(name, **kw)  # how the model would load; the stand-in loads nothing

    monkeypatch.setattr(batch, "model_for_answers", loader)
    with FakeServer(prefer_marked) as server:
        conf = tmp_path / "judge.yaml"
        conf.write_text(f"backend: openai\nmodel: judge\nbase_url: {server.url}\n")
        rc = main(["select", str(run), "--dev", str(dev), "--judge", str(conf), "--device", "cpu"])
        n_calls = len(server.calls)
        assert rc == 0
        assert set(devices) == {"cpu"}  # --device reaches the loader of every epoch
        sel = json.loads((run / "select" / "selection.json").read_text())
        assert sel["chosen"] == 6 and sel["decided_by"] == "judge"  # clear of every other
        assert [r["epoch"] for r in sel["table"]] == [5, 6, 7, 9]
        assert sel["table"][1]["win"] == 1.0 and len(sel["notes"]) == 2
        assert "(chosen)" in (run / "select" / "selection.md").read_text()
        # Rerun: answers reused, verdicts cached.
        assert main(["select", str(run), "--dev", str(dev), "--judge", str(conf)]) == 0
        assert len(server.calls) == n_calls and calls == [5, 6, 7, 9]


def test_select_likert_needs_no_reference(tmp_path, monkeypatch):
    run = tmp_path / "run"
    for epoch in (5, 6):
        (run / "checkpoints" / f"epoch-{epoch}").mkdir(parents=True)
        (run / "checkpoints" / f"epoch-{epoch}" / "config.json").write_text("{}")
    dev = tmp_path / "dev.jsonl"
    write_jsonl(dev, [{"id": f"d{i}", "source": "dev", "messages": [{"role": "user", "content": f"q{i}"}]} for i in range(10)])  # fmt: skip
    fake, _ = _fake_generate({5: 10, 6: 0})
    monkeypatch.setattr(
        importlib.import_module("limakit.generation"), "generate_answers", fake, raising=False
    )

    def rate(body, n):
        return Act("[[6]]" if "GOOD" in body["messages"][-1]["content"] else "[[2]]")

    from limakit.evaluation import select_checkpoint

    with FakeServer(rate) as server:
        cfg = JudgeConfig(backend="openai", model="judge", base_url=server.url)
        res = select_checkpoint(run, dev, cfg, epochs=[5, 6], protocol="likert", samples=2)
    assert res["chosen"] == 5 and res["table"][0]["score"] == 6.0 and res["table"][0]["n"] == 20
    from limakit.core.errors import LimaError

    with pytest.raises(LimaError, match="reference"):
        select_checkpoint(run, dev, cfg, epochs=[5], protocol="pairwise")


def test_select_with_the_real_generator(tmp_path, tiny_model_dir):
    run = tmp_path / "run"
    shutil.copytree(tiny_model_dir, run / "checkpoints" / "epoch-5")
    dev = tmp_path / "dev.jsonl"
    write_jsonl(dev, [answer(i, "reference", "ref") for i in range(2)])
    with FakeServer(lambda body, n: Act("[[C]]")) as server:
        cfg = JudgeConfig(backend="openai", model="judge", base_url=server.url)
        from limakit.evaluation import select_checkpoint
        from limakit.generation.config import DecodeConfig

        # A random tiny model never says EOT: cap the answers so the test stays fast.
        res = select_checkpoint(run, dev, cfg, epochs=[5], decode=DecodeConfig(max_new_tokens=8))
    assert res["chosen"] == 5 and res["table"][0]["tie"] == 1.0
    answers = (run / "select" / "epoch-5" / "answers.jsonl").read_text().splitlines()
    # The decoding reached the generator: every answer was capped at 8 new tokens.
    assert all(json.loads(x)["meta"]["new_tokens"] <= 8 for x in answers)
    assert {json.loads(x)["meta"]["decoding"]["max_new_tokens"] for x in answers} == {8}
