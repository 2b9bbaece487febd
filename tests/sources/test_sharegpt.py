"""ShareGPT stream: incremental parsing, clean stop at a truncation, errors with offsets."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest

from limakit.core.errors import LimaError
from limakit.sources import sharegpt
from limakit.sources.sharegpt import ShareGPTStream

FIX = Path(__file__).parent.parent / "fixtures" / "sharegpt"


def test_truncated_file_stops_at_the_break():
    stream = ShareGPTStream(FIX / "sharegpt_truncated.json")
    ids = [r["id"] for r in stream.records()]
    assert ids == ["aB3xQ_0", "aB3xQ_1", "Zk81p_0"]
    assert stream.complete == 3 and stream.truncated


def test_complete_file_is_not_truncated():
    stream = ShareGPTStream(FIX / "sharegpt_complete.json")
    assert [r["id"] for r in stream.records()] == ["c1", "c2"]
    assert stream.complete == 2 and not stream.truncated


def test_first_turn_pairs_and_reported_skips():
    items = list(ShareGPTStream(FIX / "sharegpt_truncated.json").examples(turns="first"))
    examples = [x for x in items if not isinstance(x, tuple)]
    skipped = [x for x in items if isinstance(x, tuple)]
    assert [len(e.messages) for e in examples] == [2, 2]
    assert examples[0].prompt == "What is the difference between a list and a tuple in Python?"
    assert examples[1].messages[0].role == "user"  # the system turn is not a first-turn pair
    assert skipped == [
        ("aB3xQ_1", "record 2: opens with the assistant (continuation of a split conversation)")
    ]
    whole = [
        x
        for x in ShareGPTStream(FIX / "sharegpt_truncated.json").examples(turns="all")
        if not isinstance(x, tuple)
    ]
    assert len(whole[0].messages) == 4


@pytest.mark.parametrize("chunk", [7, 64, 1 << 20])
def test_chunk_boundaries_do_not_matter(monkeypatch, tmp_path, chunk):
    rows = [
        {
            "id": f"r{i}",
            "conversations": [
                {"from": "human", "value": "q\u00e9\u4e2d" * i},
                {"from": "gpt", "value": 'a "x" \\ ' * i},
            ],
        }
        for i in range(1, 30)
    ]
    p = tmp_path / "s.json"
    p.write_text(json.dumps(rows, ensure_ascii=False, indent=2), encoding="utf-8")
    monkeypatch.setattr(sharegpt, "CHUNK", chunk)
    stream = ShareGPTStream(p)
    assert [r["id"] for r in stream.records()] == [r["id"] for r in rows]
    assert not stream.truncated
    # Cut at every kind of place: inside strings, escapes, numbers, between records.
    text = p.read_text(encoding="utf-8")
    for cut in range(len(text) // 3, len(text) - 3, max(1, len(text) // 40)):
        p.write_text(text[:cut], encoding="utf-8")
        s = ShareGPTStream(p)
        got = list(s.records())
        assert s.truncated and got == rows[: len(got)]


def test_damage_mid_file_names_the_offset(tmp_path):
    p = tmp_path / "bad.json"
    p.write_text('[{"id": "a", "conversations": []}, {"id": "b", "conversations": [}, {"id": "c"}]')
    with pytest.raises(
        LimaError, match=r"bad\.json: invalid JSON in record 2, between byte offsets \d+ and \d+"
    ):
        list(ShareGPTStream(p).records())
    p.write_text('{"id": "a"}')
    with pytest.raises(LimaError, match=r"expected '\['"):
        list(ShareGPTStream(p).records())
    p.write_bytes(b'[{"id": "caf\xe9"}]')
    with pytest.raises(LimaError, match=r"byte offset \d+: not valid UTF-8"):
        list(ShareGPTStream(p).records())


def test_packaged_pool_reads_to_its_break():
    stream = ShareGPTStream("packaged")
    n = sum(1 for _ in stream.records())
    assert n == stream.complete > 10_000 and stream.truncated


def test_bom_crlf_and_a_cut_inside_a_character(tmp_path):
    rows = [{"id": "a", "conversations": [{"from": "human", "value": "Caf\u00e9 \u4e2d?"}]}]
    text = json.dumps(rows + rows, ensure_ascii=False, indent=1).replace("\n", "\r\n")
    p = tmp_path / "s.json"
    p.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8") + b"\r\n")
    s = ShareGPTStream(p)
    assert [r["conversations"][0]["value"] for r in s.records()] == ["Caf\u00e9 \u4e2d?"] * 2
    assert not s.truncated
    # Cut inside the second record's three-byte character: a truncation, not invalid UTF-8.
    raw = p.read_bytes()
    p.write_bytes(raw[: raw.rindex("\u4e2d".encode()) + 1])
    s = ShareGPTStream(p)
    assert len(list(s.records())) == 1 and s.truncated


def test_damage_in_the_last_bytes_is_not_taken_for_a_truncation(tmp_path):
    p = tmp_path / "s.json"
    p.write_text('[{"id": "a", "conversations": []}, nonsense')
    with pytest.raises(LimaError, match="invalid JSON in record 2"):
        list(ShareGPTStream(p).records())


def _conv(rid: str, value: str) -> str:
    """One record whose human turn is ``value`` as raw JSON string content (escapes kept)."""
    return (
        f'{{"id": "{rid}", "conversations": [{{"from": "human", "value": "{value}"}}, '
        '{"from": "gpt", "value": "ok"}]}'
    )


@pytest.mark.parametrize("chunk", [5, 11, 13, 64, 1 << 16])
def test_a_lone_surrogate_escape_rejects_its_record_and_nothing_else(monkeypatch, tmp_path, chunk):
    """ijson's C parser reads "x\\ud800y" as "x?y" and fuses "\\ud800\\u0041" into one character;
    such records are rejected by number and offset, pairs and escaped backslashes are text."""
    values = {
        "pair": "smile \\ud83d\\ude00 ok",  # a real pair: one emoji
        "lone-high": "x\\ud800y",
        "fused": "\\ud800\\u0041",
        "lone-low": "\\udc00 at the start",
        "escaped": "a path C:\\\\ud800 is text",  # \\ then "ud800": no escape at all
        "high-at-end": "tail \\udbff",
        "two-highs": "\\ud800\\ud800\\udc00",  # the first high is alone, the second is paired
        "clean": "nothing odd",
    }
    p = tmp_path / "s.json"
    p.write_text("[" + ",\n".join(_conv(k, v) for k, v in values.items()) + "]\n")
    monkeypatch.setattr(sharegpt, "CHUNK", chunk)
    stream = ShareGPTStream(p)
    items = list(stream.examples(turns="first"))
    rejected = {x[0]: x for x in items if isinstance(x, tuple)}
    kept = {x.id.removeprefix("sharegpt-"): x.prompt for x in items if not isinstance(x, tuple)}
    assert set(rejected) == {"lone-high", "fused", "lone-low", "high-at-end", "two-highs"}
    assert kept == {
        "pair": "smile \U0001f600 ok",
        "escaped": "a path C:\\ud800 is text",
        "clean": "nothing odd",
    }
    raw = p.read_bytes()
    where = raw.index(b"x\\ud800y") + 1
    assert rejected["lone-high"] == (
        "lone-high",
        f"record 2: a lone surrogate (\\ud800) at byte offset {where}: text must be valid Unicode",
        "invalid_record",
    )
    assert "(\\udc00)" in rejected["lone-low"][1] and "record 4:" in rejected["lone-low"][1]
    assert "(\\udbff)" in rejected["high-at-end"][1]
    assert stream.complete == len(values) and set(stream.tainted) == {2, 3, 4, 6, 7}


def test_curation_counts_a_lone_surrogate_record_as_invalid(tmp_path):
    """Through the registered source: one rejection under invalid_record, the rest read."""
    from limakit.sources.registry import Rejection

    p = tmp_path / "s.json"
    p.write_text("[" + ",".join([_conv("a", "fine"), _conv("b", "bad \\udfff")]) + "]")

    class Ctx:
        class cfg:
            sharegpt_turns = "first"

        @staticmethod
        @contextlib.contextmanager
        def progress(what, total):
            yield lambda n: None

    out = list(sharegpt.candidates([str(p)], Ctx()))
    rejections = [x for x in out if isinstance(x, Rejection)]
    assert [(r.rule, r.reason) for r in rejections] == [
        ("invalid_record", rejections[0].reason)
    ] and "a lone surrogate (\\udfff)" in rejections[0].reason


@pytest.mark.parametrize("chunk", [3, 7, 12, 29])
def test_surrogate_escapes_agree_with_pythons_reader_on_random_text(monkeypatch, tmp_path, chunk):
    """Random strings of pairs, lone halves, escaped backslashes and other escapes: a record is
    rejected exactly when Python's own JSON reader finds a lone surrogate in it, and every other
    record reads exactly as Python reads it."""
    import random

    from limakit.core.files import _lone_surrogate

    rng = random.Random(chunk)
    pieces = ["\\ud83d", "\\ude00", "\\udbff", "\\udc00", "\\\\", "\\u0041", "\\n", "a", "é", "\\"]
    values = []
    for _ in range(120):
        v = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 8)))
        if v.endswith("\\") and not v.endswith("\\\\"):
            v += "\\"  # a lone backslash would escape the closing quote
        try:
            json.loads(f'"{v}"')
        except json.JSONDecodeError:
            continue  # not a valid JSON string: not what this test is about
        values.append(v)
    p = tmp_path / "s.json"
    p.write_text("[" + ",".join(_conv(f"r{i}", v) for i, v in enumerate(values)) + "]")
    monkeypatch.setattr(sharegpt, "CHUNK", chunk)
    stream = ShareGPTStream(p)
    items = list(stream.examples(turns="first"))
    assert len(items) == len(values)
    for v, item in zip(values, items):
        text = json.loads(f'"{v}"')
        if _lone_surrogate(text):
            assert isinstance(item, tuple) and "a lone surrogate" in item[1], (v, item)
        else:
            assert not isinstance(item, tuple) and item.prompt == text, (v, item)
