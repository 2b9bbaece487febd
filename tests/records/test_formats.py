"""Converters keep every turn and every field: history, Self-Instruct instances, content parts,
fields they do not map (kept in meta, counted), and records refused or skipped with a reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from limakit.core.errors import LimaError
from limakit.records.converters import FORMATS
from limakit.records.example import Example, Message, load_examples
from limakit.records.formats import ReadReport, convert, read_any

FIX = Path(__file__).parents[1] / "fixtures" / "formats"


def turns(ex: Example) -> list[tuple[str, str]]:
    return [(m.role, m.content) for m in ex.messages]


def write_lines(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


# --- Alpaca with history (LLaMA-Factory), Self-Instruct ------------------------------------------


def test_alpaca_history_becomes_the_earlier_turns_in_order(tmp_path):
    out = tmp_path / "lima.jsonl"
    report = convert(FIX / "alpaca_history.json", out, "alpaca", "limakit")
    assert (report.read, report.written, report.unmapped_line()) == (3, 3, None)
    single, multi, system = load_examples(out)
    assert len(single.messages) == 2
    assert turns(multi) == [
        ("user", "Why does bread go stale faster in the fridge?"),
        ("assistant", "Cold speeds up starch retrogradation, so the crumb firms up sooner."),
        ("user", "Does toasting undo it?"),
        (
            "assistant",
            "Partly: heat melts the recrystallised starch again, which is why stale bread "
            "toasts well.",
        ),
        ("user", "So where should I keep it?"),
        (
            "assistant",
            "At room temperature in a bread box for a day or two, or sliced in the freezer "
            "for longer.",
        ),
    ]
    assert turns(system) == [
        ("system", "You are a careful translator."),
        ("user", "Can you translate for me?"),
        ("assistant", "Of course. Send me the sentence."),
        ("user", "Translate the sentence into French.\n\nThe kettle is boiling."),
        ("assistant", "La bouilloire bout."),
    ]
    # And back: the same history, system and input split.
    back = tmp_path / "back.jsonl"
    convert(out, back, "limakit", "alpaca")
    rows = [json.loads(line) for line in back.read_text().splitlines()]
    original = json.loads((FIX / "alpaca_history.json").read_text())
    for row, orig in zip(rows, original):
        assert row.get("history", []) == orig["history"]
        assert {k: row[k] for k in ("instruction", "input", "output")} == {
            k: orig[k] for k in ("instruction", "input", "output")
        }
        assert row.get("system") == orig.get("system")


def test_bad_history_is_refused_by_name():
    with pytest.raises(ValueError, match="history item 1 must be a \\[user, assistant\\] pair"):
        FORMATS["alpaca"][0]({"instruction": "Q", "output": "A", "history": [["only one"]]})


def test_self_instruct_seed_tasks_become_answered_examples(tmp_path):
    out = tmp_path / "seed.jsonl"
    report = convert(FIX / "selfinstruct_seed.jsonl", out, "alpaca", "limakit")
    assert (report.read, report.written) == (2, 3)  # one example per instance
    assert report.unmapped_line() == (
        "2 records had unmapped fields: name, is_classification; kept in meta"
    )
    packing, neg, pos = load_examples(out)
    assert packing.id == "seed_task_0" and packing.answer.startswith("- Warm sleeping bag")
    assert packing.prompt == (
        "Write a short packing list for the trip described.\n\n"
        "Two nights of camping in the mountains in October."
    )
    assert [neg.id, pos.id] == ["seed_task_1-1", "seed_task_1-2"]
    assert [neg.answer, pos.answer] == ["Negative", "Positive"]
    assert neg.meta["name"] == "sentiment_label" and neg.meta["is_classification"] is True
    assert "instances" not in neg.meta  # mapped, so not repeated in meta


# --- every converter: a round trip keeps every turn; unmapped fields are kept and counted --------

MULTI = Example(
    [
        Message("user", "Q1"),
        Message("assistant", "A1"),
        Message("user", "Q2"),
        Message("assistant", "A2"),
    ],
    source="stackexchange",
    id="m1",
)
SYSTEM = Example(
    [
        Message("system", "Be kind."),
        Message("user", "Q1"),
        Message("assistant", "A1"),
        Message("user", "Q2\n\nwith input"),
        Message("assistant", "A2"),
    ],
    source="x",
    id="s1",
)
PROMPT = Example([Message("user", "Q1"), Message("assistant", "A1"), Message("user", "Q2")], id="p")


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_file_round_trip_keeps_every_turn(tmp_path, fmt):
    cases = [MULTI, PROMPT] if fmt == "lima" else [MULTI, SYSTEM, PROMPT]
    writer = FORMATS[fmt][1]
    src = write_lines(tmp_path / "in.jsonl", [writer(ex) for ex in cases])
    mid, back = tmp_path / "mid" / "limakit.jsonl", tmp_path / "back" / f"{fmt}.jsonl"
    assert convert(src, mid, fmt, "limakit").written == len(cases)
    assert convert(mid, back, "limakit", fmt).written == len(cases)
    again = [FORMATS[fmt][0](json.loads(line)) for line in back.read_text().splitlines()]
    assert [turns(e) for e in again] == [turns(e) for e in cases]


@pytest.mark.parametrize(
    "fmt, record, fields, kept",
    [
        (
            "lima",
            {"conversations": ["Q", "A"], "source": "s", "url": "u"},
            ["url"],
            {"url": "u"},
        ),
        (
            "sharegpt",
            {
                "id": "c1",
                "conversations": [
                    {"from": "human", "value": "Q", "markdown": True},
                    {"from": "gpt", "value": "A"},
                ],
                "tools": "[]",
            },
            ["tools", "conversations[].markdown"],
            {"tools": "[]", "message_fields": [{"message": 1, "fields": {"markdown": True}}]},
        ),
        (
            "alpaca",
            {"instruction": "Q", "input": "", "output": "A", "category": "open_qa"},
            ["category"],
            {"category": "open_qa"},
        ),
        (
            "openai",
            {
                "messages": [
                    {"role": "user", "content": "Q", "name": "ann"},
                    {"role": "assistant", "content": "A", "weight": 1},
                ],
                "parallel_tool_calls": False,
            },
            ["parallel_tool_calls", "messages[].name", "messages[].weight"],
            {
                "parallel_tool_calls": False,
                "message_fields": [
                    {"message": 1, "fields": {"name": "ann"}},
                    {"message": 2, "fields": {"weight": 1}},
                ],
            },
        ),
    ],
)
def test_unmapped_fields_are_kept_in_meta_and_counted(tmp_path, fmt, record, fields, kept):
    out = tmp_path / "o.jsonl"
    report = convert(write_lines(tmp_path / "in.jsonl", [record, record]), out, fmt, "limakit")
    assert report.unmapped_line() == (
        f"2 records had unmapped fields: {', '.join(fields)}; kept in meta"
    )
    (ex, _) = load_examples(out)
    assert {k: ex.meta[k] for k in kept} == kept


def test_limakit_records_with_unknown_fields_are_refused_not_dropped(tmp_path):
    src = write_lines(
        tmp_path / "in.jsonl", [{"messages": [{"role": "user", "content": "Q"}], "extra": 1}]
    )
    with pytest.raises(LimaError, match=r"in\.jsonl:1: unknown field\(s\) \['extra'\]"):
        convert(src, tmp_path / "o.jsonl", "limakit", "openai")


# --- roles: kept on purpose or refused with the reason -------------------------------------------


def test_sharegpt_system_field_is_kept_and_tool_turns_refused(tmp_path):
    src = FIX / "sharegpt_system.json"
    out = tmp_path / "o.jsonl"
    with pytest.raises(
        LimaError,
        match=r"sharegpt_system\.json: record 2: conversation turn 2: speaker 'function_call' is "
        r"a tool call or tool result",
    ):
        convert(src, out, "sharegpt", "limakit")
    report = convert(src, out, "sharegpt", "limakit", skip_invalid=True)
    assert (report.read, report.written, report.rejected) == (2, 1, 1)
    (ex,) = load_examples(out)
    assert turns(ex) == [
        ("system", "Answer with a single word."),
        ("user", "Give me a word that rhymes with moon."),
        ("assistant", "Spoon."),
    ]
    assert ex.meta == {"tools": "[]"}


@pytest.mark.parametrize(
    "messages, rule",
    [
        (
            [
                {"role": "user", "content": "Weather?"},
                {"role": "assistant", "content": None, "tool_calls": [{"id": "c"}]},
            ],
            "message 2: a tool call or tool result",
        ),
        (
            [{"role": "user", "content": "Q"}, {"role": "tool", "content": "{}"}],
            "message 2: a tool call or tool result \\(role 'tool'\\)",
        ),
        ([{"role": "robot", "content": "Q"}], "message 1: unknown role 'robot'"),
    ],
)
def test_openai_tool_messages_are_refused_by_name(tmp_path, messages, rule):
    src = write_lines(tmp_path / "chat.jsonl", [{"messages": messages}])
    with pytest.raises(LimaError, match=rf"chat\.jsonl:1: {rule}"):
        convert(src, tmp_path / "o.jsonl", "openai", "limakit")


def test_openai_developer_role_is_the_system_message():
    ex = FORMATS["openai"][0](
        {
            "messages": [
                {"role": "developer", "content": "Be brief."},
                {"role": "user", "content": "Q"},
                {"role": "assistant", "content": "A"},
            ]
        }
    )
    assert turns(ex)[0] == ("system", "Be brief.")


# --- OpenAI content parts ------------------------------------------------------------------------


def test_openai_text_parts_are_joined_and_other_parts_refused(tmp_path):
    src = FIX / "openai_parts.jsonl"
    with pytest.raises(
        LimaError,
        match=r"openai_parts\.jsonl:3: message 1: content part 2 has type 'image_url'; only text "
        r"parts are accepted",
    ):
        convert(src, tmp_path / "o.jsonl", "openai", "limakit")
    assert not (tmp_path / "o.jsonl").exists()
    report = ReadReport()
    got = []
    with pytest.raises(LimaError, match=r"openai_parts\.jsonl:3: message 1: content part 2"):
        for ex in read_any(src, report=report):  # detected as OpenAI, not as limakit
            got.append(turns(ex))
    assert got == [
        [
            ("system", "You answer in one sentence."),
            ("user", "What is the capital of Norway?"),
            ("assistant", "Oslo is the capital of Norway."),
        ],
        [("user", "hello"), ("assistant", "Hello! How can I help?")],
    ]
    assert (
        report.unmapped_line()
        == "1 record had unmapped fields: messages[].loss_weight; kept in meta"
    )


# --- --skip-invalid, empty and damaged inputs ----------------------------------------------------


def test_skip_invalid_writes_each_rejection_with_its_reason(tmp_path):
    good = {"conversations": ["Q", "A"]}
    src = tmp_path / "in.jsonl"
    src.write_text(
        "\n".join(
            [
                json.dumps(good),
                '{"conversations": [',
                json.dumps({"conversations": []}),
                json.dumps(good),
            ]
        )
        + "\n"
    )
    out = tmp_path / "out" / "o.jsonl"
    with pytest.raises(LimaError, match=r"in\.jsonl:2: invalid JSON"):
        convert(src, out, "lima", "limakit")
    assert not out.exists()
    report = convert(src, out, "lima", "limakit", skip_invalid=True)
    assert (report.read, report.written, report.rejected) == (4, 2, 2)
    assert report.rejected_to == out.parent / "rejected.jsonl"
    rows = [json.loads(line) for line in report.rejected_to.read_text().splitlines()]
    assert [(r["where"], r["reason"].split(" (")[0]) for r in rows] == [
        (f"{src}:2", "invalid JSON"),
        (f"{src}:3", "'messages' is empty"),
    ]
    assert rows[0]["record"] == '{"conversations": [\n' and rows[1]["record"] == {
        "conversations": []
    }


def test_no_valid_record_writes_no_output_but_says_why(tmp_path):
    src = write_lines(tmp_path / "in.jsonl", [{"conversations": []}])
    out = tmp_path / "o.jsonl"
    with pytest.raises(LimaError, match=r"no valid record among 1; .*o\.jsonl not written"):
        convert(src, out, "lima", "limakit", skip_invalid=True)
    assert not out.exists()
    assert json.loads((tmp_path / "rejected.jsonl").read_text())["reason"] == "'messages' is empty"


@pytest.mark.parametrize(
    "name, text", [("e.jsonl", ""), ("e.jsonl", "\n \n"), ("e.json", "[]"), ("e.json", "  ")]
)
def test_empty_input_is_an_error_and_writes_nothing(tmp_path, name, text):
    src = tmp_path / name
    src.write_text(text)
    with pytest.raises(LimaError, match=rf"{name}: .*empty"):
        convert(src, tmp_path / "o.jsonl", "alpaca", "limakit")
    assert not (tmp_path / "o.jsonl").exists()


def test_deeply_nested_json_list_is_a_clear_error(tmp_path):
    src = tmp_path / "deep.json"
    src.write_text("[" + '{"instruction": ' + "[" * 100_000 + "]" * 100_000 + "}]")
    with pytest.raises(LimaError, match=r"deep\.json: JSON nested too deeply"):
        convert(src, tmp_path / "o.jsonl", "alpaca", "limakit")
    jsonl = tmp_path / "deep.jsonl"
    jsonl.write_text('{"messages": ' + "[" * 100_000 + "]" * 100_000 + "}\n")
    with pytest.raises(LimaError, match=r"deep\.jsonl:1: JSON nested too deeply"):
        list(read_any(jsonl))


def test_json_lines_named_json_get_a_hint(tmp_path):
    src = tmp_path / "data.json"
    src.write_text('{"instruction": "Q", "output": "A"}\n{"instruction": "Q", "output": "A"}\n')
    with pytest.raises(
        LimaError, match=r"data\.json: invalid JSON \(Extra data.*name the file \.jsonl"
    ):
        convert(src, tmp_path / "o.jsonl", "alpaca", "limakit")


def test_meta_the_output_format_cannot_hold_is_counted(tmp_path):
    report = convert(FIX / "selfinstruct_seed.jsonl", tmp_path / "o.jsonl", "alpaca", "openai")
    assert report.meta_line() == (
        "3 records had meta the openai format cannot hold: name, is_classification; not written "
        "(--to limakit keeps it)"
    )
    report = convert(FIX / "alpaca_history.json", tmp_path / "a.jsonl", "alpaca", "alpaca")
    assert report.meta_line() is None  # the input split is written back as 'input'
    assert (
        convert(
            FIX / "selfinstruct_seed.jsonl", tmp_path / "l.jsonl", "alpaca", "limakit"
        ).meta_line()
        is None
    )


def test_skip_invalid_never_overwrites_a_curations_rejections(tmp_path):
    src = write_lines(tmp_path / "in.jsonl", [{"conversations": ["Q", "A"]}])
    out = tmp_path / "curated" / "lima.jsonl"
    out.parent.mkdir()
    funnel = out.parent / "rejected.jsonl"
    funnel.write_text(json.dumps({"id": "se-1", "rule": "answer_length", "reason": "short"}) + "\n")
    with pytest.raises(LimaError, match=r"holds the rejections of a curation"):
        convert(src, out, "lima", "limakit", skip_invalid=True)
    assert json.loads(funnel.read_text())["rule"] == "answer_length" and not out.exists()


def test_fields_of_a_self_instruct_instance_are_kept_too(tmp_path):
    task = {
        "id": "t",
        "instruction": "Add.",
        "instances": [
            {"input": "1+1", "output": "2", "explanation": "one and one"},
            {"input": "2+2", "output": "4"},
        ],
    }
    out = tmp_path / "o.jsonl"
    report = convert(write_lines(tmp_path / "t.jsonl", [task]), out, "alpaca", "limakit")
    assert report.unmapped_line() == (
        "1 record had unmapped fields: instances[].explanation; kept in meta"
    )
    first, second = load_examples(out)
    assert first.meta == {"alpaca_input": "1+1", "instance_fields": {"explanation": "one and one"}}
    assert second.meta == {"alpaca_input": "2+2"}


# --- text that is not Unicode, records without messages, huge rejections, .json outputs ----------

SURROGATE = (
    '{"messages": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A\\ud800"}]}'
)
PAIR = {"messages": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}]}


@pytest.mark.parametrize("name", ["in.jsonl", "in.json"])
def test_a_lone_surrogate_is_an_invalid_record(tmp_path, name):
    src = tmp_path / name
    if name.endswith(".json"):
        src.write_text(f"[{json.dumps(PAIR)}, {SURROGATE}, {json.dumps(PAIR)}]", encoding="utf-8")
        where = f"{src}: record 2"
    else:
        src.write_text(f"{json.dumps(PAIR)}\n{SURROGATE}\n{json.dumps(PAIR)}\n", encoding="utf-8")
        where = f"{src}:2"
    rule = "a lone surrogate (\\ud800) in messages[1].content: text must be valid Unicode"
    out = tmp_path / "out" / "o.jsonl"
    with pytest.raises(LimaError) as e:
        convert(src, out, "limakit", "limakit")
    assert str(e.value) == f"{where}: {rule}" and not out.exists()
    report = convert(src, out, "limakit", "limakit", skip_invalid=True)
    assert (report.read, report.written, report.rejected) == (3, 2, 1)
    (row,) = [json.loads(x) for x in (out.parent / "rejected.jsonl").read_text().splitlines()]
    assert (row["where"], row["reason"]) == (where, rule)
    assert json.loads(row["record"]) == json.loads(SURROGATE)  # kept as its escaped JSON text
    with pytest.raises(LimaError, match="lone surrogate"):
        list(read_any(src))


@pytest.mark.parametrize(
    "record, rule",
    [
        ({"id": "x"}, "missing field 'messages'"),
        ({"messages": 5}, "'messages' must be a list"),
        ({"messages": "Hi"}, "'messages' must be a list"),
    ],
)
def test_limakit_records_are_read_by_the_one_validating_reader(tmp_path, record, rule):
    from limakit.records.example import read_examples

    src = write_lines(tmp_path / "in.jsonl", [PAIR, record])
    with pytest.raises(LimaError) as e:
        list(read_examples(src, require_answer=None))  # what generate and train read with
    assert str(e.value) == f"{src}:2: {rule}"
    with pytest.raises(LimaError) as e:
        convert(src, tmp_path / "o.jsonl", "limakit", "lima")
    assert str(e.value) == f"{src}:2: {rule}"
    report = convert(src, tmp_path / "out" / "o.jsonl", "limakit", "lima", skip_invalid=True)
    assert (report.written, report.rejected) == (1, 1)
    row = json.loads((tmp_path / "out" / "rejected.jsonl").read_text())
    assert (row["reason"], row["record"]) == (rule, record)


def test_a_huge_rejected_record_is_kept_as_an_excerpt_and_its_length(tmp_path):
    from limakit.records.formats import EXCERPT_CHARS

    huge = "x" * 1_000_000
    src = tmp_path / "in.jsonl"
    src.write_text(
        json.dumps(PAIR)
        + "\n"
        + '{"messages": "'
        + huge
        + "\n"
        + json.dumps({"messages": huge})
        + "\n"
    )
    out = tmp_path / "out" / "o.jsonl"
    report = convert(src, out, "limakit", "limakit", skip_invalid=True)
    assert (report.written, report.rejected) == (1, 2)
    rejected = out.parent / "rejected.jsonl"
    assert rejected.stat().st_size < 3 * EXCERPT_CHARS
    rows = [json.loads(x) for x in rejected.read_text().splitlines()]
    assert [r["where"] for r in rows] == [f"{src}:2", f"{src}:3"]
    assert rows[0]["record"] == {
        "excerpt": ('{"messages": "' + huge)[:EXCERPT_CHARS],
        "chars": 1_000_015,
    }
    assert rows[1]["record"]["excerpt"].startswith('{"messages": "xxx')
    assert rows[1]["record"]["chars"] == len(json.dumps({"messages": huge}))


def test_an_output_named_json_is_one_json_list_with_the_generator(tmp_path):
    answers = [
        {
            "id": f"p{i}",
            "source": "eval",
            "messages": [
                {"role": "user", "content": f"Question {i}?"},
                {"role": "assistant", "content": f"Answer {i}."},
            ],
            "meta": {"model": "lima-7b", "sample": 0},
        }
        for i in range(3)
    ]
    src = write_lines(tmp_path / "answers.jsonl", answers)
    out = tmp_path / "outputs.json"
    report = convert(src, out, "limakit", "alpaca")
    rows = json.loads(out.read_text())  # what alpaca_eval's loader does: one JSON document
    assert report.written == 3 and isinstance(rows, list)
    assert rows[0] == {
        "instruction": "Question 0?",
        "input": "",
        "output": "Answer 0.",
        "generator": "lima-7b",
    }
    assert report.meta_not_written == {"sample": 3}  # the model name was written, as generator
    back = list(read_any(out))
    assert [ex.meta["model"] for ex in back] == ["lima-7b"] * 3  # and read back as the model
    convert(src, tmp_path / "outputs.jsonl", "limakit", "alpaca")
    lines = (tmp_path / "outputs.jsonl").read_text().splitlines()
    assert [json.loads(x) for x in lines] == rows  # .jsonl stays JSON lines
