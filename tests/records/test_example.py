"""The Example format: validation rules with file:line, converters in both directions, atomic writes."""

from __future__ import annotations

import json

import pytest

from limakit.core.errors import LimaError
from limakit.records.converters import FORMATS
from limakit.records.example import Example, Message, load_examples, read_examples, write_examples
from limakit.records.formats import convert


def write_lines(path, rows):
    path.write_text(
        "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8"
    )
    return path


GOOD = {
    "id": "a",
    "source": "manual",
    "messages": [{"role": "user", "content": "Q?"}, {"role": "assistant", "content": "A."}],
}


@pytest.mark.parametrize(
    "bad, rule",
    [
        ('{"id": "x", "messages": [', "invalid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ({"id": "x"}, "missing field 'messages'"),
        ({"messages": []}, "'messages' is empty"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "unknown role 'robot'"),
        (
            {
                "messages": [
                    {"role": "user", "content": "  "},
                    {"role": "assistant", "content": "A"},
                ]
            },
            "message 1: content is empty",
        ),
        (
            {"messages": [{"role": "user", "content": 3}, {"role": "assistant", "content": "A"}]},
            "content must be a string",
        ),
        ({"messages": [{"role": "assistant", "content": "A"}]}, "expected 'user', got 'assistant'"),
        (
            {"messages": [{"role": "user", "content": "Q"}, {"role": "user", "content": "Q2"}]},
            "message 2: roles must alternate",
        ),
        ({"messages": [{"role": "user", "content": "Q"}]}, "last message must be the assistant's"),
        (
            {
                "messages": [
                    {"role": "user", "content": "Q"},
                    {"role": "system", "content": "S"},
                    {"role": "assistant", "content": "A"},
                ]
            },
            "message 2: a system message may only come first",
        ),
        ({"messages": [{"role": "system", "content": "S"}]}, "only a system message"),
        (
            {
                "messages": [
                    {"role": "user", "content": "Q"},
                    {"role": "assistant", "content": "A"},
                ],
                "extra": 1,
            },
            "unknown field(s) ['extra']",
        ),
        (
            {"messages": [{"role": "user"}, {"role": "assistant", "content": "A"}]},
            "message 1 must be an object",
        ),
        ({"messages": GOOD["messages"], "meta": []}, "'meta' must be an object"),
    ],
)
def test_each_rule_names_file_and_line(tmp_path, bad, rule):
    path = write_lines(tmp_path / "data.jsonl", [GOOD, "", bad])
    with pytest.raises(LimaError) as e:
        load_examples(path)
    assert f"{path}:3: " in str(e.value)
    assert rule in str(e.value)


def test_non_utf8_line_is_reported(tmp_path):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(json.dumps(GOOD).encode() + b"\n" + '{"x": "caf\xe9"}\n'.encode("latin-1"))
    with pytest.raises(LimaError, match=r"latin1.jsonl:2: not valid UTF-8"):
        load_examples(path)


def test_prompt_files_end_with_user(tmp_path):
    prompt = {"id": "p", "messages": [{"role": "user", "content": "Q?"}]}
    path = write_lines(tmp_path / "prompts.jsonl", [prompt])
    assert [e.id for e in read_examples(path, require_answer=False)] == ["p"]
    path2 = write_lines(tmp_path / "bad.jsonl", [GOOD])
    with pytest.raises(LimaError, match="last message must be the user's"):
        load_examples(path2, require_answer=False)


def test_write_is_atomic_and_round_trips(tmp_path):
    out = tmp_path / "out.jsonl"
    exs = [
        Example([Message("user", "Q é 🙂"), Message("assistant", "A")], source="s", meta={"k": 1})
    ]
    assert write_examples(out, exs) == 1
    assert [e.to_dict() for e in load_examples(out)] == [exs[0].to_dict()]

    def boom():
        yield exs[0]
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        write_examples(out, boom())
    assert [e.to_dict() for e in load_examples(out)] == [exs[0].to_dict()]  # old file intact
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]  # no temp file left


def test_ids_are_stable_content_hashes():
    a = Example([Message("user", "Q"), Message("assistant", "A")])
    b = Example([Message("user", "Q"), Message("assistant", "A")])
    c = Example([Message("user", "Q"), Message("assistant", "B")])
    assert a.id == b.id != c.id


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
    [Message("system", "Be kind."), Message("user", "Q"), Message("assistant", "A")],
    source="x",
    id="s1",
)
SINGLE = Example([Message("user", "Q"), Message("assistant", "A")], source="alpaca", id="a1")


@pytest.mark.parametrize("fmt", ["lima", "sharegpt", "openai", "limakit", "alpaca"])
def test_round_trip_every_converter(fmt):
    reader, writer = FORMATS[fmt]
    cases = [MULTI, SINGLE] if fmt == "lima" else [MULTI, SYSTEM, SINGLE]
    for ex in cases:
        back = reader(json.loads(json.dumps(writer(ex))))
        assert [m.to_dict() for m in back.messages] == [m.to_dict() for m in ex.messages]


def test_native_shapes():
    assert FORMATS["lima"][1](MULTI) == {
        "conversations": ["Q1", "A1", "Q2", "A2"],
        "source": "stackexchange",
    }
    sg = FORMATS["sharegpt"][1](SYSTEM)
    assert [t["from"] for t in sg["conversations"]] == ["system", "human", "gpt"]
    alp = FORMATS["alpaca"][0](
        {"instruction": "Summarise.", "input": "Long text.", "output": "Short."}
    )
    assert alp.messages[0].content == "Summarise.\n\nLong text."
    assert FORMATS["alpaca"][1](alp) == {
        "instruction": "Summarise.",
        "input": "Long text.",
        "output": "Short.",
    }
    assert FORMATS["openai"][1](SINGLE) == {"messages": [m.to_dict() for m in SINGLE.messages]}


def test_convert_file_lima_to_limakit_and_back(tmp_path):
    src = write_lines(
        tmp_path / "train.jsonl",
        [
            {"conversations": ["Q1", "A1"], "source": "wikihow"},
            {"conversations": ["Q2", "A2", "Q3", "A3"], "source": "multi_turn"},
        ],
    )
    mid, back = tmp_path / "mid.jsonl", tmp_path / "back.jsonl"
    assert convert(src, mid, "lima", "limakit").written == 2
    exs = load_examples(mid)
    assert exs[1].source == "multi_turn" and len(exs[1].messages) == 4
    convert(mid, back, "limakit", "lima")
    assert back.read_text() == src.read_text().replace('"conversations"', '"conversations"')


def test_convert_reports_bad_record(tmp_path):
    src = write_lines(
        tmp_path / "sg.jsonl",
        [{"conversations": [{"from": "human", "value": "Q"}, {"from": "alien", "value": "x"}]}],
    )
    with pytest.raises(
        LimaError, match=r"sg.jsonl:1: conversation turn 2: unknown speaker 'alien'"
    ):
        convert(src, tmp_path / "o.jsonl", "sharegpt", "limakit")
    assert not (tmp_path / "o.jsonl").exists()


def test_convert_reads_json_list(tmp_path):
    src = tmp_path / "alpaca.json"
    src.write_text(json.dumps([{"instruction": "Say hi.", "input": "", "output": "Hi."}]))
    out = tmp_path / "o.jsonl"
    assert convert(src, out, "alpaca", "openai").written == 1
    assert json.loads(out.read_text()) == {
        "messages": [
            {"role": "user", "content": "Say hi."},
            {"role": "assistant", "content": "Hi."},
        ]
    }


def test_read_any_detects_each_format(tmp_path):
    from limakit.records.formats import read_any

    rows = [
        {"conversations": ["Q1", "A1"], "source": "wikihow"},
        {"conversations": [{"from": "human", "value": "Q2"}, {"from": "gpt", "value": "A2"}]},
        {"instruction": "Q3", "input": "", "output": "A3"},
        {"messages": [{"role": "user", "content": "Q4"}, {"role": "assistant", "content": "A4"}]},
    ]
    path = write_lines(tmp_path / "mixed.jsonl", rows + [{"text": "no format"}])
    got = []
    with pytest.raises(LimaError, match=r"mixed.jsonl:5: unknown record format"):
        for ex in read_any(path):
            got.append((ex.prompt, ex.answer))
    assert got == [("Q1", "A1"), ("Q2", "A2"), ("Q3", "A3"), ("Q4", "A4")]


def test_an_empty_generated_answer_reads_back_only_where_allowed():
    obj = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": ""}]}
    with pytest.raises(ValueError, match="message 2: content is empty"):
        Example.from_dict(obj)
    assert Example.from_dict(obj, empty_answer_ok=True).messages[-1].content == ""
    bad = {"messages": [{"role": "user", "content": " "}, {"role": "assistant", "content": "x"}]}
    with pytest.raises(ValueError, match="message 1: content is empty"):  # only the answer
        Example.from_dict(bad, empty_answer_ok=True)
