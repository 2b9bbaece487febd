"""File helpers: atomic writes with the usual permissions, JSONL reading that names file and line."""

from __future__ import annotations

import json
import os
import stat

import pytest

from limakit.core import lines
from limakit.core.errors import LimaError
from limakit.core.files import (
    append_jsonl,
    atomic_write,
    drop_cut_line,
    read_jsonl_records,
    write_jsonl,
)


@pytest.fixture
def umask():
    """Set a umask for one test and put the old one back."""
    old = os.umask(0o022)
    yield lambda m: os.umask(m)
    os.umask(old)


@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077])
def test_outputs_get_the_mode_of_the_umask(tmp_path, umask, mask):
    umask(mask)
    out = tmp_path / "examples.jsonl"
    write_jsonl(out, [{"a": 1}])
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~mask
    with atomic_write(tmp_path / "model.bin", "wb") as f:
        f.write(b"\0")
    assert stat.S_IMODE((tmp_path / "model.bin").stat().st_mode) == 0o666 & ~mask
    assert os.umask(mask) == mask  # reading the umask left it as it was


def test_deeply_nested_jsonl_line_is_a_clear_error(tmp_path):
    path = tmp_path / "deep.jsonl"
    deep = '{"x": ' + "[" * 100_000 + "]" * 100_000 + "}"
    path.write_text(json.dumps({"ok": 1}) + "\n" + deep + "\n", encoding="utf-8")
    with pytest.raises(LimaError, match=r"deep\.jsonl:2: JSON nested too deeply"):
        list(read_jsonl_records(path))
    from limakit.core.files import parse_json

    with pytest.raises(LimaError, match=r"x\.json: record 1: JSON nested too deeply"):
        parse_json("[" * 100_000, "x.json: record 1")


def test_bad_lines_can_be_handed_over_instead_of_raised(tmp_path):
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"a": 1}\n{"a": \n[1]\n\n{"a": 2}\n')
    bad = []
    rows = list(read_jsonl_records(path, on_error=lambda *x: bad.append(x)))
    assert rows == [(1, {"a": 1}), (5, {"a": 2})]  # the byte-order mark is not an error
    assert [(n, reason.split(" (")[0]) for n, reason, _ in bad] == [
        (2, "invalid JSON"),
        (3, "each line must be a JSON object, got list"),
    ]
    assert bad[0][2] == '{"a": \n'


def test_a_resumable_file_cut_by_a_kill_reads_back_without_its_last_row(tmp_path):
    p = tmp_path / "answers.jsonl"
    p.write_text('{"step": 1}\n{"step": 2}\n{"ste', encoding="utf-8")
    assert [r for _, r in read_jsonl_records(p, resumable=True)] == [{"step": 1}, {"step": 2}]
    with pytest.raises(LimaError, match=r"answers\.jsonl:3: invalid JSON"):
        list(read_jsonl_records(p))  # an input file, not a resumable output: the cut is an error
    # Damage before the last line is an error either way.
    p.write_text('{"step": 1}\n{"ste\n{"step": 3}\n', encoding="utf-8")
    with pytest.raises(LimaError, match=r"answers\.jsonl:2: invalid JSON"):
        list(read_jsonl_records(p, resumable=True))


def test_a_line_cut_by_a_kill_is_taken_off_before_appending_again(tmp_path, monkeypatch):
    p = tmp_path / "answers.jsonl"
    kept = '{"step": 1}\n\n{ "step" : 2 }\n'  # bytes before the cut stay exactly as they were
    p.write_text(kept + '{"step": 3, "te', encoding="utf-8")
    drop_cut_line(p)
    assert p.read_text(encoding="utf-8") == kept
    with p.open("a", encoding="utf-8") as f:
        append_jsonl(f, {"step": 3})
    assert [r for _, r in read_jsonl_records(p)] == [{"step": 1}, {"step": 2}, {"step": 3}]
    # A whole record that lacks only its newline is kept and ended.
    p.write_text('{"step": 1}\n{"step": 2}', encoding="utf-8")
    drop_cut_line(p)
    assert p.read_text(encoding="utf-8") == '{"step": 1}\n{"step": 2}\n'
    p.write_text('\ufeff{"step": 1}', encoding="utf-8")  # one line, after a byte-order mark
    drop_cut_line(p)
    assert [r for _, r in read_jsonl_records(p)] == [{"step": 1}]
    # A cut line longer than one block is found from the end; one past the line limit is cut.
    monkeypatch.setattr(lines, "CHUNK_BYTES", 4)
    p.write_text('{"a": 1}\n{"b": "' + "x" * 50, encoding="utf-8")
    drop_cut_line(p)
    assert p.read_text(encoding="utf-8") == '{"a": 1}\n'
    monkeypatch.setenv("LIMAKIT_MAX_LINE_BYTES", "20")
    p.write_text('{"a": 1}\n{"b": "' + "x" * 30 + '"}', encoding="utf-8")
    drop_cut_line(p)
    assert p.read_text(encoding="utf-8") == '{"a": 1}\n'
    # Nothing to do: a file that ends cleanly, an empty one, a missing one.
    for text in ('{"a": 1}\n', ""):
        p.write_text(text, encoding="utf-8")
        drop_cut_line(p)
        assert p.read_text(encoding="utf-8") == text
    drop_cut_line(tmp_path / "missing.jsonl")
    assert not (tmp_path / "missing.jsonl").exists()


def test_training_metrics_cut_by_a_kill_resume_cleanly(tmp_path):
    from limakit.training.progress import Reporter

    rows = "".join(json.dumps({"step": s}) + "\n" for s in (1, 2, 3))
    (tmp_path / "metrics.jsonl").write_text(rows + '{"step": 4, "lo', encoding="utf-8")
    Reporter(tmp_path, total=10, done=2, enabled=True).close()
    kept = (tmp_path / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(x)["step"] for x in kept] == [1, 2]  # rows after the checkpoint dropped


def test_json_documents_are_written_whole_and_read_with_their_name(tmp_path):
    from limakit.core.files import read_json, write_json

    write_json(tmp_path / "summary.json", {"n": 1, "text": "caf\u00e9"})
    assert read_json(tmp_path / "summary.json") == {"n": 1, "text": "caf\u00e9"}
    (tmp_path / "bad.json").write_text('{"n": ', encoding="utf-8")
    with pytest.raises(LimaError, match=r"bad\.json: invalid JSON"):
        read_json(tmp_path / "bad.json")
    with pytest.raises(LimaError, match=r"gone\.json: summary not found"):
        read_json(tmp_path / "gone.json", "summary")


def test_a_lone_surrogate_is_invalid_text_named_by_file_line_and_field(tmp_path):
    from limakit.core.files import read_json

    path = tmp_path / "in.jsonl"
    good = {"messages": [{"role": "user", "content": "smile \ud83d\ude00"}]}  # a whole pair: fine
    path.write_text(
        json.dumps(good) + "\n" + '{"messages": [{"role": "user", "content": "x\\ud800"}]}\n',
        encoding="utf-8",
    )
    with pytest.raises(LimaError) as e:
        list(read_jsonl_records(path))
    assert str(e.value) == (
        f"{path}:2: a lone surrogate (\\ud800) in messages[0].content: text must be valid Unicode"
    )
    bad = []
    assert [n for n, _ in read_jsonl_records(path, on_error=lambda *x: bad.append(x))] == [1]
    assert bad[0][:2] == (
        2,
        "a lone surrogate (\\ud800) in messages[0].content: text must be valid Unicode",
    )
    (tmp_path / "doc.json").write_text('{"\\udfff": 1}', encoding="utf-8")
    with pytest.raises(LimaError, match=r"doc\.json: a lone surrogate \(\\udfff\) in a field name"):
        read_json(tmp_path / "doc.json")


def test_a_json_list_is_read_record_by_record_with_the_same_rules(tmp_path):
    from limakit.core.files import read_json_records

    path = tmp_path / "in.json"
    path.write_text('[{"a": 1}, 7, {"b": "\\ud800"}, {"c": 2}]', encoding="utf-8")
    with pytest.raises(LimaError, match=r"in\.json: record 2: each record must be an object"):
        list(read_json_records(path))
    bad = []
    assert list(read_json_records(path, on_error=lambda *x: bad.append(x))) == [
        (1, {"a": 1}),
        (4, {"c": 2}),
    ]
    assert bad == [
        (2, "each record must be an object", 7),
        (3, "a lone surrogate (\\ud800) in b: text must be valid Unicode", '{"b": "\\ud800"}'),
    ]


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_nan_and_infinity_are_refused_on_read(tmp_path, number):
    from limakit.core.files import read_json

    path = tmp_path / "in.jsonl"
    path.write_text('{"a": 1}\n{"meta": {"score": ' + number + "}}\n", encoding="utf-8")
    with pytest.raises(
        LimaError, match=rf"in\.jsonl:2: invalid JSON \({number}.*numbers must be finite"
    ):
        list(read_jsonl_records(path))
    (tmp_path / "doc.json").write_text(f"[{number}]", encoding="utf-8")
    with pytest.raises(LimaError, match=r"doc\.json: invalid JSON"):
        read_json(tmp_path / "doc.json")


def test_only_standard_json_is_written(tmp_path):
    from limakit.core.files import write_json

    nan, inf = float("nan"), float("inf")
    write_jsonl(tmp_path / "m.jsonl", [{"step": 1, "loss": nan, "meta": {"x": [inf, 1.5]}}])
    write_json(tmp_path / "s.json", {"loss": -inf})

    def strict(text: str):
        return json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} written"))

    assert strict((tmp_path / "m.jsonl").read_text()) == {
        "step": 1,
        "loss": None,
        "meta": {"x": [None, 1.5]},
    }
    assert strict((tmp_path / "s.json").read_text()) == {"loss": None}


@pytest.mark.parametrize(
    "text, says",
    [
        ('{"a": "x', "Unterminated string starting at column 7"),
        ('{"a": "x\ty"}', "Invalid control character at column 9"),
        ("{oops", "Expecting property name enclosed in double quotes at column 2"),
    ],
)
def test_json_errors_say_where_once(tmp_path, text, says):
    from limakit.core.files import parse_json

    path = tmp_path / "in.jsonl"
    path.write_text(text, encoding="utf-8")  # no newline: it would end the string early
    with pytest.raises(LimaError) as e:
        list(read_jsonl_records(path))
    assert str(e.value) == f"{path}:1: invalid JSON ({says})"
    with pytest.raises(LimaError) as e:
        parse_json(text, "doc.json")
    assert str(e.value) == f"doc.json: invalid JSON ({says.replace(' at ', ' at line 1 ')})"


def test_a_folder_where_a_file_is_expected_is_one_clear_error(tmp_path):
    from limakit.core.files import is_blank, read_json, read_json_records

    folder = tmp_path / "data.jsonl"
    folder.mkdir()
    for read in (
        lambda: list(read_jsonl_records(folder)),
        lambda: list(read_json_records(folder)),
        lambda: read_json(folder),
        lambda: is_blank(folder),
    ):
        with pytest.raises(LimaError, match=rf"^{folder}: is a folder; expected a"):
            read()
    with pytest.raises(LimaError, match=rf"^{folder}: is a folder; expected the name of a file"):
        write_jsonl(folder, [{"a": 1}])
    assert list(folder.iterdir()) == []


# --- lines longer than the limit -------------------------------------------------------------------

LIMIT = 32
LONG = b'{"text": "' + b"x" * 40 + b'"}'  # 52 bytes, over LIMIT


@pytest.mark.parametrize(
    "data, bad_line",
    [
        (b'{"a": 1}\n' + LONG + b'\n{"a": 3}\n', 2),
        (b'{"a": 1}\n{"a": 2}\n' + LONG, 3),  # the last line, no newline after it
        (b'{"a": 1}\r\n' + LONG + b'\r\n{"a": 3}\r\n', 2),  # CRLF
        (b"\xef\xbb\xbf" + LONG + b'\n{"a": 2}\n', 1),  # after a byte-order mark
    ],
)
def test_a_line_longer_than_the_limit_is_named_by_file_line_and_limit(tmp_path, data, bad_line):
    path = tmp_path / "in.jsonl"
    path.write_bytes(data)
    with pytest.raises(LimaError) as e:
        list(read_jsonl_records(path, max_line=LIMIT))
    assert str(e.value).startswith(f"{path}:{bad_line}: line longer than {LIMIT} bytes (limit ")
    assert "LIMAKIT_MAX_LINE_BYTES" in str(e.value)
    bad = []
    rows = list(read_jsonl_records(path, on_error=lambda *x: bad.append(x), max_line=LIMIT))
    lines = len(data.splitlines())
    assert [n for n, _ in rows] == [n for n in range(1, lines + 1) if n != bad_line]
    assert [(n, reason.split(" (")[0]) for n, reason, _ in bad] == [
        (bad_line, f"line longer than {LIMIT} bytes")
    ]
    assert LONG.decode().startswith(bad[0][2].removeprefix("\ufeff").rstrip())  # its first bytes


def test_a_line_of_exactly_the_limit_is_read_whatever_its_line_ending(tmp_path):
    line = b'{"t": "' + b"y" * (LIMIT - 9) + b'"}'
    assert len(line) == LIMIT
    for data in (line + b"\n" + line + b"\n", line + b"\r\n" + line + b"\r\n", line + b"\n" + line):
        path = tmp_path / "in.jsonl"
        path.write_bytes(data)
        assert len(list(read_jsonl_records(path, max_line=LIMIT))) == 2


def test_the_limit_comes_from_the_environment(tmp_path, monkeypatch):
    path = tmp_path / "in.jsonl"
    path.write_bytes(b'{"a": 1}\n' + LONG + b"\n")
    assert len(list(read_jsonl_records(path))) == 2  # the default limit: 64 MiB
    monkeypatch.setenv("LIMAKIT_MAX_LINE_BYTES", "16")
    with pytest.raises(LimaError, match=r"in\.jsonl:2: line longer than 16 bytes"):
        list(read_jsonl_records(path))
    monkeypatch.setenv("LIMAKIT_MAX_LINE_BYTES", "64k")
    with pytest.raises(LimaError, match=r"LIMAKIT_MAX_LINE_BYTES='64k': expected a whole number"):
        list(read_jsonl_records(path))


def test_lines_are_the_same_however_the_stream_is_cut(tmp_path):
    """bounded_lines against a plain split, over every way of cutting the bytes in two and in
    blocks of one byte: the same lines, and a long line wherever one passes the limit."""
    import random

    from limakit.core.lines import LongLine, bounded_lines

    rng = random.Random(0)
    kinds = [b"b" * 12 + b"\r", b"c" * 40, b"", b"\r"]  # CRLF at the limit, long, blank
    lines = [
        (b"a" * rng.randrange(12) if rng.random() < 0.4 else rng.choice(kinds)) + b"\n"
        for _ in range(30)
    ]
    data = b"".join(lines) + b"d" * 13  # the last line without its newline

    def expected(limit):
        want = [*lines, b"d" * 13]
        return [
            ("long" if len(x.removesuffix(b"\n").removesuffix(b"\r")) > limit else x) for x in want
        ]

    def got(chunks, limit):
        return ["long" if isinstance(x, LongLine) else x for x in bounded_lines(chunks, limit)]

    for limit in (12, 13, 40):
        want = expected(limit)
        assert got([data], limit) == want
        assert got([data[i : i + 1] for i in range(len(data))], limit) == want
        for cut in range(len(data)):
            assert got([data[:cut], data[cut:]], limit) == want, cut


def test_an_endless_line_is_read_past_in_constant_memory(tmp_path):
    """A sparse file of 256 MiB without a newline, then one good line: with a 64 KiB limit the
    reader holds a block at a time (ru_maxrss grows by far less than the file), in both modes."""
    import subprocess
    import sys

    path = tmp_path / "endless.jsonl"
    with open(path, "wb") as f:
        f.truncate(256 << 20)
        f.seek(0, 2)
        f.write(b'\n{"a": 1}\n')
    script = f"""
import resource, sys
from limakit.core.errors import LimaError
from limakit.core.files import read_jsonl_records
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
bad = []
rows = list(read_jsonl_records({str(path)!r}, on_error=lambda *x: bad.append(x)))
try:
    list(read_jsonl_records({str(path)!r}))
except LimaError as e:
    error = str(e)
grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
print(rows, [(n, r.split(" (")[0], len(t)) for n, r, t in bad], error, grown // 1024, sep="\\n")
"""
    env = {**os.environ, "LIMAKIT_MAX_LINE_BYTES": str(64 << 10)}
    r = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True
    )
    rows, bad, error, grown_mib = r.stdout.splitlines()
    assert rows == "[(2, {'a': 1})]"
    assert bad == "[(1, 'line longer than 65536 bytes', 1024)]"
    assert error.startswith(f"{path}:1: line longer than 65536 bytes (limit ")
    assert int(grown_mib) < 64, f"the reader grew by {grown_mib} MiB reading a 256 MiB line"
