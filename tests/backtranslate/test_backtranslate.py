"""Back-translation: reversed labels, the strict parser, hygiene, threshold, rounds, provenance,
and resuming a killed run. Tiny random models; the external rater is a real local HTTP server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from limakit.backtranslate import BacktranslateConfig, backtranslate, parse_score
from limakit.backtranslate.config import AUGMENTED_TAG, SEED_TAG, HygieneConfig
from limakit.core.files import read_jsonl_records, write_jsonl
from limakit.records.example import Example, Message, load_examples
from tests.backtranslate.helpers import (
    SEED,
    TEXTS,
    scripted_judge,
    tiny_config,
    write_seed,
    write_site,
    write_texts,
)
from tests.evaluation.fake_server import FakeServer

ROOT = Path(__file__).resolve().parents[2]


def rows(path: Path) -> list[dict]:
    return [r for _, r in read_jsonl_records(path)]


# --- the parser ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, score",
    [
        ("Focused, complete and clear.\n[[5]]", 5),
        ("[[1]]", 1),
        ("Reasons first.\n[[ 3 ]]", 3),
        ("[[4]] is my score", 4),
    ],
)
def test_parser_accepts_exactly_one_score(text, score):
    assert parse_score(text) == score


@pytest.mark.parametrize(
    "text",
    [
        "",
        "Score: 5",
        "5",
        "[[0]]",
        "[[6]]",
        "[[10]]",
        "[[4.5]]",
        "[[5/5]]",
        "[[five]]",
        "[[-3]]",
        "[[5]] [[5]]",
        "[[4]] or [[5]]",
        "[[5]] and an unclosed [[",
        "[[3]]]]",
        "[5]",
        None,
        42,
    ],
)
def test_parser_refuses_anything_else(text):
    assert parse_score(text) is None


# --- the backward model's data --------------------------------------------------------------------


def test_reversed_examples_train_exactly_the_instruction(smollm2_tokenizer):
    from limakit.backtranslate.training import reversed_example
    from limakit.records.template import IGNORE, Template, render

    template = Template()
    eot = smollm2_tokenizer.convert_tokens_to_ids(template.eot)
    for i, (q, a) in enumerate(SEED):
        seed = Example(
            [Message("system", "Be brief."), Message("user", q), Message("assistant", a)],
            id=f"s{i}",
        )
        rev = reversed_example(seed)
        assert [m.role for m in rev.messages] == ["user", "assistant"]
        assert rev.messages[0].content == a and rev.messages[1].content == q
        r = render(rev, smollm2_tokenizer, template, max_len=4096)
        trained = [t for t, lab in zip(r.input_ids, r.labels) if lab != IGNORE]
        assert all(lab in (IGNORE, t) for t, lab in zip(r.input_ids, r.labels))
        # Exactly the instruction's tokens then the EOT, all in one run at the end.
        assert trained[-1] == eot
        assert smollm2_tokenizer.decode(trained[:-1]) == q
        first = next(j for j, lab in enumerate(r.labels) if lab != IGNORE)
        assert all(lab != IGNORE for lab in r.labels[first:])
        # Everything before (header, the answer as the user turn) is masked.
        assert a in smollm2_tokenizer.decode(r.input_ids[:first])
        assert q not in smollm2_tokenizer.decode(r.input_ids[:first])


def test_backward_training_file_is_the_reversed_seed(tmp_path, tiny_model_dir, smollm2_tokenizer):
    """The file the trainer read: rendered by the trainer's own encode, only instructions count."""
    from limakit.core.config import load_config
    from limakit.training import TrainConfig
    from limakit.training.loop import encode

    cfg = BacktranslateConfig.model_validate(
        tiny_config(tmp_path, tiny_model_dir, [str(write_texts(tmp_path / "t.jsonl"))])
    )
    from limakit.backtranslate.loop import Loop

    loop = Loop(cfg)
    loop.root.mkdir(parents=True)
    loop.backward()
    data = tmp_path / "out/backward/examples.jsonl"
    examples = load_examples(data)
    assert [(ex.messages[0].content, ex.messages[1].content) for ex in examples] == [
        (a, q) for q, a in SEED
    ]
    encoded = encode(
        load_config(TrainConfig, None, [f"data={data}", "max_len=4096"]), smollm2_tokenizer
    )
    for item, (q, _) in zip(encoded, SEED):
        targets = [t for t in item.targets if t != -100]  # shifted: the tokens predicted
        assert smollm2_tokenizer.decode(targets) == q + "<|eot|>"
    assert (tmp_path / "out/backward/run/summary.json").exists()


# --- hygiene ----------------------------------------------------------------------------------------


def test_hygiene_counts_every_drop_by_rule(tmp_path):
    from limakit.backtranslate.texts import gather, hygiene

    seed = load_examples(write_seed(tmp_path / "seed.jsonl"))
    long_text = "Plain words about gardening and soil that go on for a while. " * 3
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "a.txt").write_text(long_text + "Water early in the day.", encoding="utf-8")
    (folder / "b.md").write_text(long_text + "Water early in the day.", encoding="utf-8")  # dup
    (folder / "c.md").write_text("Too short.", encoding="utf-8")
    (folder / "d.md").write_text(long_text + " I water mine at noon.", encoding="utf-8")
    (folder / "e.csv").write_text("a,b\n", encoding="utf-8")
    (folder / "f.txt").write_text(SEED[0][1], encoding="utf-8")  # a seed answer
    (folder / "g.txt").write_text(
        long_text + " As mentioned in the other answer, mulch helps.", encoding="utf-8"
    )
    (folder / "h.txt").write_text(
        long_text + " the quick brown fox jumps over the lazy dog near the old red barn today",
        encoding="utf-8",
    )
    evals = tmp_path / "eval.jsonl"
    write_jsonl(
        evals, [{"prompt": "the quick brown fox jumps over the lazy dog near the old red barn"}]
    )
    jsonl = tmp_path / "t.jsonl"
    write_jsonl(jsonl, [{"id": "j1", "text": long_text + " Prune in winter."}, {"body": "x"}])
    site = write_site(
        tmp_path / "dumps/cooking.stackexchange.com",
        [
            ("How long should dough rest?", long_text + " Rest it for an hour.", 25),
            ("Is a low score answer read?", long_text + " Low score.", 2),
        ],
    )
    cfg = HygieneConfig.model_validate(
        {
            "limits": {"min_answer_chars": 40, "max_answer_chars": 4000},
            "decontaminate": {"against": [str(evals)]},
        }
    )
    drops: list[dict] = []
    read = gather([str(folder), str(jsonl), str(site)], cfg, drops)
    kept = hygiene(read, seed, cfg, 0, drops)
    by_rule = {}
    for d in drops:
        by_rule.setdefault(d["rule"], []).append(d)
    assert set(by_rule) == {
        "unsupported_file",
        "no_text_field",
        "answer_score",
        "answer_length",
        "first_person",
        "meta_reference",
        "duplicate",
        "seed_duplicate",
        "decontamination",
    }
    assert all(len(v) == 1 for v in by_rule.values())
    assert len(read) + 3 == len(kept) + len(drops)  # three drops happen while reading
    se = [t for t in kept if t["source"] == "stackexchange"]
    assert len(se) == 1
    assert se[0]["meta"]["question"] == "How long should dough rest?"
    assert "How long" not in se[0]["text"]  # the question is not in the text
    assert {t["id"] for t in kept} >= {"j1"}


# --- the loop with an external judge ------------------------------------------------------------------


def _run(cfg: dict) -> dict:
    return backtranslate(BacktranslateConfig.model_validate(cfg))


def test_threshold_rounds_and_provenance_with_an_external_judge(tmp_path, tiny_model_dir):
    texts = write_texts(tmp_path / "texts.jsonl")
    with FakeServer(scripted_judge) as srv:
        judge = {"backend": "openai", "model": "scripted", "base_url": srv.url, "max_retries": 0}
        cfg = tiny_config(
            tmp_path,
            tiny_model_dir,
            [str(texts)],
            rate={"rater": "judge", "judge": judge, "threshold": 4},
            system_tags=True,
        )
        summary = _run(cfg)
        calls_first = len(srv.calls)
        # Another threshold reruns only the keep steps and what follows them.
        cfg["rate"]["threshold"] = 5
        again = _run(cfg)
        assert len(srv.calls) == calls_first
    assert set(again["ran"]) == {"keep-1", "keep-2", "final", "card"}
    assert len(load_examples(tmp_path / "out/augmented.jsonl")) == 2
    cfg["rate"]["threshold"] = 4
    summary = _run(cfg)  # back to 4: the same files as the first run
    out = tmp_path / "out"
    # Five pairs; the garbled one is asked twice (one retry on an unparsable reply); round 2 is
    # served by the cache.
    assert calls_first == 6
    for k in (1, 2):
        kept = load_examples(out / f"round-{k}/kept.jsonl")
        assert sorted(ex.meta["backtranslation"]["text_id"] for ex in kept) == [
            "t-five-a",
            "t-five-b",
            "t-four",
        ]
        dropped = {d["id"]: d["rule"] for d in rows(out / f"round-{k}/dropped.jsonl")}
        assert dropped == {"t-three": "below_threshold", "t-bad": "unparsable"}
        for ex in kept:
            bt = ex.meta["backtranslation"]
            assert set(bt) == {"text_id", "round", "score", "backward_model", "forward_model"}
            assert bt["round"] == k and bt["score"] == (4 if bt["text_id"] == "t-four" else 5)
            assert bt["forward_model"] == "judge:scripted"
            assert (out / bt["backward_model"] / "config.json").exists()
            assert ex.messages[1].content == TEXTS[bt["text_id"]]
    assert not (out / "forward-0").exists()  # an external rater needs no forward model
    examples = load_examples(out / "examples.jsonl")
    assert len(examples) == len(SEED) + 3 == summary["examples"]
    assert [ex.messages[0].content for ex in examples[: len(SEED)]] == [SEED_TAG] * len(SEED)
    assert [ex.messages[0].content for ex in examples[len(SEED) :]] == [AUGMENTED_TAG] * 3
    card = (out / "card.md").read_text(encoding="utf-8")
    assert "| 5 | 2 | 2 |" in card and "| unparsable | 1 | 1 |" in card
    assert (out / "scores.png").stat().st_size > 0 and (out / "lengths.png").exists()
    ratings = rows(out / "round-1/ratings.jsonl")
    assert {r["id"]: r["reasons"] for r in ratings}[
        "t-four"
    ] == "The response fits the instruction."


def test_similarity_figure_on_stack_exchange_answers(tmp_path, tiny_model_dir):
    long = "Knead the dough until it is smooth, then let it rest covered in a warm place. "
    site = write_site(
        tmp_path / "se/cooking.stackexchange.com",
        [
            ("How long should bread dough rest?", long + "One hour is usual. SCORE5", 20),
            ("Why do onions make eyes water?", long + "Sulfur compounds. SCORE4", 30),
            ("How do I sharpen a knife?", long + "Use a whetstone at a steady angle. SCORE5", 15),
        ],
    )
    with FakeServer(scripted_judge) as srv:
        judge = {"backend": "openai", "model": "scripted", "base_url": srv.url}
        cfg = tiny_config(
            tmp_path,
            tiny_model_dir,
            [str(site)],
            rounds=1,
            rate={"rater": "judge", "judge": judge},
            hygiene={
                "limits": {"min_answer_chars": 40, "max_answer_chars": 4000},
                "dedup": {"near": False},
            },
        )
        cfg["embedder"] = "all-minilm-l6-v2"
        cfg["embed_device"] = "cpu"
        summary = _run(cfg)
    sim = summary["steps"]["card"]["similarity"]
    assert sim["n"] == 3 and -1 <= sim["matched"] <= 1 and -1 <= sim["random"] <= 1
    assert sim["kept_n"] == 2
    assert (tmp_path / "out/similarity.png").exists()
    assert "real question" in (tmp_path / "out/card.md").read_text(encoding="utf-8")


# --- the loop with the forward model as rater -----------------------------------------------------


def test_rounds_retrain_the_forward_model_on_seed_plus_kept(tmp_path, tiny_model_dir):
    texts = write_texts(tmp_path / "texts.jsonl")
    cfg = tiny_config(tmp_path, tiny_model_dir, [str(texts)], rate={"threshold": 1})
    _run(cfg)
    out = tmp_path / "out"
    r1 = rows(out / "round-1/ratings.jsonl")
    assert len(r1) == 5 and all(r["score"] in (1, 2, 3, 4, 5) for r in r1)
    assert all(abs(sum(r["probs"].values()) - 1) < 1e-4 for r in r1)
    kept1 = load_examples(out / "round-1/kept.jsonl")
    assert len(kept1) == 5  # threshold 1 keeps every parsable pair
    # Round 2's forward model trained on the seed then exactly round 1's kept pairs.
    f1 = load_examples(out / "forward-1/examples.jsonl")
    assert [ex.id for ex in f1] == [f"seed-{i}" for i in range(len(SEED))] + [ex.id for ex in kept1]
    kept2 = load_examples(out / "round-2/kept.jsonl")
    for ex in kept2:
        bt = ex.meta["backtranslation"]
        assert bt["round"] == 2 and bt["forward_model"].startswith("forward-1/run/checkpoints/")
    for ex in kept1:
        assert ex.meta["backtranslation"]["forward_model"].startswith("forward-0/run/checkpoints/")

    # A stricter threshold keeps exactly the pairs at or above it, in each round.
    top = max(r["score"] for r in r1)
    cfg["rate"]["threshold"] = top
    summary = _run(cfg)
    assert {"texts", "backward", "augment", "forward-0", "rate-1"} <= set(summary["skipped"])
    assert {"keep-1", "forward-1", "rate-2", "keep-2"} <= set(summary["ran"])
    for k in (1, 2):
        ratings = rows(out / f"round-{k}/ratings.jsonl")
        want = sorted(f"bt-{r['id']}" for r in ratings if r["score"] >= top)
        assert sorted(ex.id for ex in load_examples(out / f"round-{k}/kept.jsonl")) == want
        below = {d["id"] for d in rows(out / f"round-{k}/dropped.jsonl")}
        assert below == {r["id"] for r in ratings if r["score"] < top}
    f1 = load_examples(out / "forward-1/examples.jsonl")
    assert len(f1) == len(SEED) + len(
        [r for r in rows(out / "round-1/ratings.jsonl") if r["score"] >= top]
    )


# --- resuming -----------------------------------------------------------------------------------------


def test_a_failed_step_resumes_and_finished_steps_are_skipped(
    tmp_path, tiny_model_dir, monkeypatch
):
    import limakit.backtranslate.rating as rating

    texts = write_texts(tmp_path / "texts.jsonl")
    cfg = tiny_config(tmp_path, tiny_model_dir, [str(texts)], rounds=1)
    real = rating.rate_pairs

    def boom(*args, **kwargs):
        raise RuntimeError("killed while rating")

    monkeypatch.setattr(rating, "rate_pairs", boom)
    with pytest.raises(RuntimeError, match="killed while rating"):
        _run(cfg)
    out = tmp_path / "out"
    marker = json.loads((out / "steps/rate-1.json").read_text())
    assert marker["state"] == "running"
    stamp = (out / "backward/run/summary.json").stat().st_mtime_ns
    monkeypatch.setattr(rating, "rate_pairs", real)
    summary = _run(cfg)
    assert summary["skipped"] == ["texts", "backward", "augment", "forward-0"]
    assert summary["ran"] == ["rate-1", "keep-1", "final", "card"]
    assert (out / "backward/run/summary.json").stat().st_mtime_ns == stamp
    # A third run does nothing.
    assert _run(cfg)["ran"] == []


def test_kill_9_in_the_middle_of_augmentation_resumes(tmp_path, tiny_model_dir, capfd):
    from limakit.cli import main

    texts = write_texts(tmp_path / "texts.jsonl")
    with FakeServer(scripted_judge) as srv:
        judge = {"backend": "openai", "model": "scripted", "base_url": srv.url}
        cfg = tiny_config(
            tmp_path,
            tiny_model_dir,
            [str(texts)],
            rounds=1,
            rate={"rater": "judge", "judge": judge, "threshold": 4},
        )
        cfg["progress"] = True
        path = tmp_path / "bt.yaml"
        path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
        env = {**os.environ, "LIMAKIT_CRASH_AT": "generate:answers:2", "PYTHONPATH": str(ROOT)}
        cmd = [sys.executable, "-m", "limakit", "backtranslate", str(path)]
        first = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        assert first.returncode == -9, first.stderr[-2000:]
        out = tmp_path / "out"
        done = rows(out / "augment/instructions.jsonl")
        assert len(done) == 2
        assert json.loads((out / "steps/augment.json").read_text())["state"] == "running"
        capfd.readouterr()
        assert main(["backtranslate", str(path)]) == 0  # the rerun, in this process
        second = capfd.readouterr().err
    assert "texts: done earlier, skipped" in second
    assert "backward: done earlier, skipped" in second
    assert "augment: resuming" in second
    final = rows(out / "augment/instructions.jsonl")
    assert len(final) == 5 and final[:2] == done  # the two finished answers were kept as they were
    kept = load_examples(out / "round-1/kept.jsonl")
    assert sorted(ex.meta["backtranslation"]["text_id"] for ex in kept) == [
        "t-five-a",
        "t-five-b",
        "t-four",
    ]


def test_cli_flags_override_the_config(tmp_path):
    from limakit.cli import build_parser
    from limakit.cli.backtranslate import load

    judge = tmp_path / "judge.yaml"
    judge.write_text("backend: openai\nmodel: m\nbase_url: http://127.0.0.1:9/v1\n")
    train = tmp_path / "train.yaml"
    train.write_text("model: smollm2-135m\nepochs: 2\n")
    config = tmp_path / "bt.yaml"
    config.write_text("rounds: 3\ntrain: train.yaml\nrate: {threshold: 3}\n")
    args = build_parser().parse_args(
        [
            "backtranslate",
            str(config),
            "--seed",
            "s.jsonl",
            "--texts",
            "a.txt",
            "b/",
            "--out",
            "o",
            "--judge",
            str(judge),
            "--greedy",
            "--system-tags",
            "--set",
            "rate.threshold=4",
        ]
    )
    cfg = load(args)
    assert cfg.texts == ["a.txt", "b/"] and cfg.rounds == 3 and cfg.train.epochs == 2
    assert cfg.rate.rater == "judge" and cfg.rate.judge.model == "m" and cfg.rate.threshold == 4
    assert cfg.augment.decode.greedy and cfg.system_tags
    from limakit.core.errors import LimaError

    bad = build_parser().parse_args(["backtranslate", "--seed", "s.jsonl", "--set", "rounds=0"])
    with pytest.raises(LimaError, match="texts"):
        load(bad)
