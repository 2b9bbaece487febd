"""``lima backtranslate`` on inputs and outputs that are not what it expects: clear errors, the
files they point to written, and the JSONL texts read through the bounded line reader."""

from __future__ import annotations

import json

from limakit.cli import main
from tests.backtranslate.helpers import write_seed, write_texts


def flat(text: str) -> str:
    return "".join(text.split())  # rich wraps long error lines


def _args(tmp_path, texts, out) -> list[str]:
    seed = write_seed(tmp_path / "seed.jsonl")
    return ["backtranslate", "--seed", str(seed), "--texts", str(texts), "--out", str(out)]


def test_an_out_that_is_a_file_is_a_clear_error(tmp_path, capsys):
    texts = write_texts(tmp_path / "texts.jsonl")
    out = tmp_path / "out.jsonl"
    out.write_text("keep me\n")
    assert main(_args(tmp_path, texts, out)) == 2
    err = capsys.readouterr().err
    assert flat(f"{out}: is a file; expected the output folder (--out)") in flat(err)
    assert "Traceback" not in err and out.read_text() == "keep me\n"
    assert main(_args(tmp_path, texts, out / "run")) == 2
    assert flat(f"{out}: is a file, so the output folder (--out) {out / 'run'} cannot") in flat(
        capsys.readouterr().err
    )


def test_when_no_text_passes_hygiene_the_drops_it_points_to_are_written(tmp_path, capsys):
    texts = write_texts(tmp_path / "texts.jsonl", {"a": "Too short.", "b": "Also short."})
    out = tmp_path / "out"
    assert main(_args(tmp_path, texts, out)) == 2
    dropped = out / "texts" / "dropped.jsonl"
    assert flat(f"no text passed hygiene (2 read, 2 drops with their rule in {dropped})") in flat(
        capsys.readouterr().err
    )
    rows = [json.loads(line) for line in dropped.read_text().splitlines()]
    assert [(r["id"], r["rule"]) for r in rows] == [("a", "answer_length"), ("b", "answer_length")]
    assert not (out / "texts" / "texts.jsonl").exists()


def test_a_texts_line_over_the_limit_is_refused_by_file_and_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LIMAKIT_MAX_LINE_BYTES", "600")
    texts = write_texts(tmp_path / "texts.jsonl", {"a": "short", "b": "long " * 150})
    assert main(_args(tmp_path, texts, tmp_path / "out")) == 2
    assert flat(f"{texts}:2: line longer than 600 bytes (limit") in flat(capsys.readouterr().err)
