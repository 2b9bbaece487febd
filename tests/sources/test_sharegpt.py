"""ShareGPT stream: incremental parsing, clean stop at a truncation, errors with offsets."""

from __future__ import annotations

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
