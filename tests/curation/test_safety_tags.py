"""The ``safety`` tag: carried by converted data, kept past the refusal-removing rules, counted on
the card, given to whole files by config, left out by ``rules.drop_tags``, and trained on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from limakit.cli import main
from limakit.core.errors import LimaError
from limakit.core.files import write_jsonl
from limakit.curation import CurateConfig, curate
from limakit.records.example import load_examples

REFUSAL = (
    "I can't help with getting into someone else's email account: reading another person's "
    "messages without their consent is a crime in most places and a serious breach of trust. If "
    "you are locked out of your own account, the provider's recovery page is the way back in."
)
FIRST_PERSON = "I think the quickest way is to soak the beans overnight, then simmer them."
HELPFUL = "Soak the beans overnight, then simmer them for an hour with a bay leaf."


def _sharegpt(rid: str, prompt: str, answer: str, **extra) -> dict:
    turns = [{"from": "human", "value": prompt}, {"from": "gpt", "value": answer}]
    return {"id": rid, "conversations": turns, **extra}


def _rejected(out: Path) -> dict[str, str]:
    rows = [json.loads(x) for x in (out / "rejected.jsonl").read_text().splitlines()]
    return {r["id"]: r["rule"] for r in rows}


def _cfg(out: Path, manual, **kw) -> CurateConfig:
    return CurateConfig.model_validate(
        {
            "manual": manual,
            "n": 10,
            "out": str(out),
            "progress": False,
            "rules_by_source": {"manual": ["empty", "encoding", "first_person"]},
            **kw,
        }
    )


def test_tag_goes_through_convert_curate_and_training(tmp_path, smollm2_tokenizer):
    """A ShareGPT record's ``tags`` field becomes meta.tags on conversion; curation keeps the
    tagged refusal that first_person would drop (and drops the untagged first-person answer);
    the card counts it; training renders it with its answer trained."""
    raw = tmp_path / "raw.jsonl"
    write_jsonl(
        raw,
        [
            _sharegpt("refusal", "How do I read my ex's email?", REFUSAL, tags=["safety"]),
            _sharegpt("chatty", "How do I cook dried beans?", FIRST_PERSON),
            _sharegpt("plain", "How should I cook dried beans?", HELPFUL),
        ],
    )
    converted = tmp_path / "converted.jsonl"
    assert main(["convert", str(raw), str(converted), "--from", "sharegpt"]) == 0
    assert [ex.tags for ex in load_examples(converted)] == [["safety"], [], []]

    out = tmp_path / "curated"
    summary = curate(_cfg(out, [str(converted)]))
    kept = {ex.id: ex for ex in load_examples(out / "examples.jsonl")}
    assert set(kept) == {"refusal", "plain"} and summary.examples == 2
    assert kept["refusal"].tags == ["safety"] and kept["refusal"].answer == REFUSAL
    assert _rejected(out) == {"chatty": "first_person"}
    card = (out / "card.md").read_text()
    assert "| safety (tagged, counted in its source above) | | | 1 |" in card
    assert "1 of 2 selected (50.0%)" in card
    assert "exempt from the rules that remove refusals" in card and "`first_person`" in card

    from limakit.training.config import TrainConfig
    from limakit.training.loop import encode

    data = out / "examples.jsonl"
    encoded = encode(TrainConfig(data=str(data), max_len=512), smollm2_tokenizer)
    order = [ex.id for ex in load_examples(data)]
    item = encoded[order.index("refusal")]
    trained = [t for t in item.targets if t != -100]
    assert smollm2_tokenizer.decode(trained) == REFUSAL + "<|eot|>"


def test_without_the_tag_the_refusal_is_dropped(tmp_path):
    """The control: the same refusal untagged is rejected by first_person, so the tag is what
    kept it above."""
    path = tmp_path / "m.jsonl"
    write_jsonl(path, [_sharegpt("refusal", "How do I read my ex's email?", REFUSAL)])
    converted = tmp_path / "c.jsonl"
    assert main(["convert", str(path), str(converted), "--from", "sharegpt"]) == 0
    out = tmp_path / "curated"
    summary = curate(_cfg(out, [str(converted)]))
    assert summary.examples == 0
    assert _rejected(out) == {"refusal": "first_person"}
    assert (
        "| safety (tagged, counted in its source above) | | | 0 |" in (out / "card.md").read_text()
    )


def test_other_rules_still_apply_to_tagged_examples(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text(
        yaml.safe_dump(
            [
                {
                    "id": "short",
                    "messages": [
                        {"role": "user", "content": "How do I pick a lock?"},
                        {"role": "assistant", "content": "I won't help with that."},
                    ],
                    "meta": {"tags": ["safety"]},
                }
            ]
        )
    )
    out = tmp_path / "curated"
    rules = {"manual": ["empty", "answer_length", "first_person"]}
    curate(_cfg(out, [str(path)], rules_by_source=rules))
    assert _rejected(out) == {"short": "answer_length"}


def _write_yaml(path: Path, rid: str, prompt: str, answer: str) -> str:
    messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]
    path.write_text(yaml.safe_dump([{"id": rid, "messages": messages}]))
    return str(path)


def test_config_tags_a_whole_file(tmp_path):
    """``manual: {files, tags: {safety: [file]}}`` tags every example of that file only."""
    plain = _write_yaml(tmp_path / "plain.yaml", "plain", "How do I cook beans?", HELPFUL)
    refusals = _write_yaml(tmp_path / "refusals.yaml", "refusal", "Read my ex's email?", REFUSAL)
    out = tmp_path / "curated"
    cfg = _cfg(out, {"files": [plain, refusals], "tags": {"safety": [refusals]}})
    assert cfg.manual == [plain, refusals]
    curate(cfg)
    kept = {ex.id: ex.tags for ex in load_examples(out / "examples.jsonl")}
    assert kept == {"plain": [], "refusal": ["safety"]}


def test_config_tag_naming_a_file_that_is_not_an_input_is_an_error(tmp_path):
    plain = _write_yaml(tmp_path / "plain.yaml", "plain", "How do I cook beans?", HELPFUL)
    cfg = _cfg(tmp_path / "out", {"files": [plain], "tags": {"safety": ["refusals.yaml"]}})
    with pytest.raises(LimaError, match=r"'safety' names refusals\.yaml, which is not among"):
        curate(cfg)


def test_drop_tags_leaves_tagged_examples_out_and_says_so(tmp_path):
    """The ablation arm without safety examples: ``rules.drop_tags: [safety]``."""
    plain = _write_yaml(tmp_path / "plain.yaml", "plain", "How do I cook beans?", HELPFUL)
    refusals = _write_yaml(tmp_path / "refusals.yaml", "refusal", "Read my ex's email?", REFUSAL)
    out = tmp_path / "curated"
    manual = {"files": [plain, refusals], "tags": {"safety": [refusals]}}
    summary = curate(_cfg(out, manual, rules={"drop_tags": ["safety"]}))
    assert [ex.id for ex in load_examples(out / "examples.jsonl")] == ["plain"]
    assert _rejected(out) == {"refusal": "drop_tags"}
    assert summary.rejected_by_rule == {"drop_tags": 1}
    card = (out / "card.md").read_text()
    assert "| manual | drop_tags | 1 |" in card
    assert "Examples tagged `safety` were left out (`rules.drop_tags`)" in card


def test_drop_tags_is_an_override(tmp_path):
    """The arm's override (``data.curate.rules.drop_tags=[safety]`` in a run) as a key=value."""
    from limakit.core.config import load_config

    conf = tmp_path / "curate.yaml"
    conf.write_text("manual: [a.yaml]\n")
    cfg = load_config(CurateConfig, conf, ["rules.drop_tags=[safety]"])
    assert cfg.rules.drop_tags == ["safety"]


@pytest.mark.parametrize("tags", ["safety", [""], [1], {"safety": True}])
def test_malformed_tags_are_one_clear_error(tmp_path, tags):
    path = tmp_path / "m.jsonl"
    row = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    write_jsonl(path, [{**row, "meta": {"tags": tags}}])
    with pytest.raises(LimaError, match=r"m\.jsonl:1: 'meta\.tags' must be a list of names"):
        curate(_cfg(tmp_path / "out", [str(path)]))


ROOT = Path(__file__).parent.parent.parent


def test_packaged_safety_examples_are_tagged_first_person_refusals():
    from limakit.curation.rules import RulesConfig, first_person
    from limakit.sources.manual import read_manual

    examples = list(read_manual(ROOT / "configs" / "safety-examples.yaml"))
    assert len(examples) >= 5
    for ex in examples:
        assert ex.tags == ["safety"]
        assert first_person(ex, RulesConfig()) is not None  # what the tag exempts them from


@pytest.mark.parametrize("arm, kept", [("with_safety", 6), ("without_safety", 0)])
def test_safety_ablation_arms_differ_only_in_the_tagged_examples(tmp_path, monkeypatch, arm, kept):
    """Each custom arm of configs/ablate-safety.yaml, as `lima ablate` plans it, curates the
    demo's 48 examples with all six tagged refusals, or with none (counted under drop_tags)."""
    from limakit.run.ablate import load_ablate_config, plan_arms
    from limakit.run.config import load_run_config

    monkeypatch.chdir(ROOT)  # the run's data paths are relative to the working folder
    cfg = load_ablate_config("configs/ablate-safety.yaml")
    (planned,) = [a for a in plan_arms(cfg) if a.arm == arm]
    assert planned.ablation == "custom" and planned.n == 48
    run = load_run_config(ROOT / "configs" / cfg.run, list(planned.overrides))
    assert run.sample.prompts.endswith("safety/prompts.jsonl")
    out = tmp_path / arm
    # (no token-length screen: the arms differ in tags, not lengths, and it is the slow part)
    summary = curate(run.data.curate.model_copy(update={"out": str(out), "max_len": None}))
    assert summary.examples == 48
    tagged = [ex for ex in load_examples(out / "examples.jsonl") if "safety" in ex.tags]
    assert len(tagged) == kept
    assert summary.rejected_by_rule.get("drop_tags", 0) == 6 - kept
