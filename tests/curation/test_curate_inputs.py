"""``lima curate`` on damaged and empty inputs: strict by default, ``--skip-invalid`` for pools,
and an empty input file is an error before anything is written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from limakit.cli import main
from limakit.records.example import load_examples

FIX = Path(__file__).parent.parent / "fixtures"


def flat(text: str) -> str:
    return "".join(text.split())  # rich wraps long error lines


def _answer(i: int) -> str:
    return f"Answer {i}: " + " ".join(f"word{i}x{j}" for j in range(300))


def test_pool_skip_invalid_rejects_with_reason_and_counts(tmp_path, capsys):
    good = [
        {
            "messages": [
                {"role": "user", "content": f"Question {i}?"},
                {"role": "assistant", "content": _answer(i)},
            ]
        }
        for i in range(3)
    ]
    bad = {"messages": [{"role": "user", "content": "Q"}, {"role": "user", "content": "Q again"}]}
    pool = tmp_path / "pool.jsonl"
    lines = [
        json.dumps(good[0]),
        json.dumps(bad),
        json.dumps(good[1]),
        "{oops",
        json.dumps(good[2]),
    ]
    pool.write_text("".join(line + "\n" for line in lines))
    args = ["curate", "--pool", str(pool), "--select", "random", "--n", "10", "--no-progress"]
    assert main([*args, "--out", str(tmp_path / "strict")]) == 2
    assert flat(f"{pool}:2: message 2: roles must alternate") in flat(capsys.readouterr().err)
    assert not (tmp_path / "strict" / "examples.jsonl").exists()

    out = tmp_path / "out"
    assert main([*args, "--out", str(out), "--skip-invalid"]) == 0
    err = capsys.readouterr().err
    assert "invalid_record: 2" in err and "selected 3 examples" in err
    assert len(load_examples(out / "examples.jsonl")) == 3
    rows = [json.loads(x) for x in (out / "rejected.jsonl").read_text().splitlines()]
    invalid = [r for r in rows if r["rule"] == "invalid_record"]
    assert [(r["id"], r["reason"].split(" (")[0]) for r in invalid] == [
        (f"{pool}:2", "message 2: roles must alternate user/assistant starting with user"),
        (f"{pool}:4", "invalid JSON"),
    ]
    assert invalid[0]["meta"]["record"] == bad and invalid[1]["meta"]["record"] == "{oops\n"


@pytest.mark.parametrize(
    "flag, name",
    [
        ("--wikihow", "w.jsonl"),
        ("--wikihow", "w.csv"),
        ("--pool", "p.jsonl"),
        ("--manual", "m.jsonl"),
        ("--reddit", "RS.ndjson"),
        ("--sharegpt", "s.json"),
    ],
)
def test_an_empty_input_file_exits_2_and_writes_nothing(tmp_path, capsys, flag, name):
    empty = tmp_path / name
    empty.write_text("\n\n")
    out = tmp_path / "out"
    assert main(["curate", flag, str(empty), "--out", str(out), "--no-progress"]) == 2
    assert flat(f"{empty}: empty file") in flat(capsys.readouterr().err)
    assert not out.exists()


def test_a_sharegpt_list_with_no_conversation_is_an_error(tmp_path, capsys):
    src = tmp_path / "s.json"
    src.write_text("[\n]\n")
    assert (
        main(["curate", "--sharegpt", str(src), "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    )
    assert flat("s.json: the JSON list holds no conversation") in flat(capsys.readouterr().err)


def test_wikihow_columns_are_set_on_the_command_line(tmp_path, capsys):
    faq = tmp_path / "faq.csv"
    faq.write_text(
        "Topic,Question,Answer\r\nKitchen,Boil Rice,Rinse it first.\r\nGarden,Water Ferns,Keep the soil damp.\r\n"
    )
    out = tmp_path / "out"
    args = ["curate", "--wikihow", str(faq), "--n", "2", "--out", str(out), "--no-progress"]
    assert main(args) == 2  # the header fits no known layout
    err = flat(capsys.readouterr().err)
    assert flat("unknown wikiHow CSV layout (columns seen: Topic, Question, Answer)") in err
    mapped = [
        "--set",
        "wikihow_options.columns.title=Question",
        "--set",
        "wikihow_options.columns.text=Answer",
        "--set",
        "wikihow_options.columns.category=Topic",
    ]
    assert main([*args, *mapped]) == 0
    got = sorted(
        (e.prompt, e.answer, e.meta["category"]) for e in load_examples(out / "examples.jsonl")
    )
    assert got == [
        ("How to Boil Rice", "Rinse it first.", "Kitchen"),
        ("How to Water Ferns", "Keep the soil damp.", "Garden"),
    ]


def test_pool_fields_kept_in_meta_are_counted_in_a_note(tmp_path, capsys):
    pool = tmp_path / "alpaca.jsonl"
    rows = [
        {"instruction": f"Question {i}?", "input": "", "output": _answer(i), "category": "qa"}
        for i in range(2)
    ]
    pool.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    args = ["curate", "--pool", str(pool), "--select", "random", "--n", "2", "--out", str(out)]
    assert main([*args, "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert f"note: {pool}: 2 records had unmapped fields: category; kept in meta" in err
    assert {e.meta["category"] for e in load_examples(out / "examples.jsonl")} == {"qa"}


def test_wikihow_columns_can_be_spelled_as_a_wikihow_section(tmp_path):
    """`wikihow.columns` (on the command line or as a YAML section) is `wikihow_options.columns`."""
    from limakit.core.config import load_config
    from limakit.curation import CurateConfig

    cfg = load_config(CurateConfig, None, ["wikihow.columns.title=Question"])
    assert cfg.wikihow == [] and cfg.wikihow_options.columns == {"title": "Question"}
    yml = tmp_path / "c.yaml"
    yml.write_text("wikihow:\n  files: [faq.csv]\n  columns: {text: Answer}\n", encoding="utf-8")
    cfg = load_config(CurateConfig, yml, ["wikihow.columns.title=Question"])
    assert cfg.wikihow == ["faq.csv"]
    assert cfg.wikihow_options.columns == {"text": "Answer", "title": "Question"}
    yml.write_text("wikihow: [faq.csv]\n", encoding="utf-8")  # the list form takes sub-keys too
    cfg = load_config(CurateConfig, yml, ["wikihow.columns.title=Question"])
    assert cfg.wikihow == ["faq.csv"] and cfg.wikihow_options.columns == {"title": "Question"}
