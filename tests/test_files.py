"""File helpers: atomic writes with the usual permissions, JSONL reading that names file and line."""

from __future__ import annotations

import json
import os
import stat

import pytest

from limakit.errors import LimaError
from limakit.files import atomic_write, read_jsonl_records, write_jsonl


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
    from limakit.files import parse_json

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
