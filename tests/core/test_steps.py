"""The resumable-step component both `lima run` and `lima backtranslate` use: one marker format,
content keys, damaged outputs found and redone, a killed step resumed, a shared cache."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from limakit.core.errors import LimaError
from limakit.core.files import sha256_file
from limakit.core.steps import DAMAGED, Step, StepFolder


class Writer:
    """A step's work: writes ``text`` to ``out`` (after ``partial`` to ``part``, when given) and
    counts its calls; ``fail`` raises after the partial output, as a killed run would stop."""

    def __init__(self, out: str, text: str, part: str | None = None):
        self.out, self.text, self.part = out, text, part
        self.calls = 0
        self.fail = False
        self.saw_partial: list[bool] = []

    def __call__(self, root: Path) -> dict:
        self.calls += 1
        if self.part:
            p = root / self.part
            self.saw_partial.append(p.exists())
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text("partial\n")
        if self.fail:
            raise RuntimeError("killed")
        (root / self.out).parent.mkdir(parents=True, exist_ok=True)
        (root / self.out).write_text(self.text)
        return {"wrote": self.out}


def folder(tmp_path: Path, **kw) -> StepFolder:
    return StepFolder(tmp_path / "out", "steps", label="test", **kw)


def test_a_finished_step_is_skipped_and_its_marker_has_one_format(tmp_path):
    work = Writer("a/a.txt", "alpha")
    step = Step("a", ["a"], work, config={"n": 1})
    first = folder(tmp_path).run(step)
    assert (first.status, first.why, first.summary) == ("ran", "first run", {"wrote": "a/a.txt"})
    marker = json.loads((tmp_path / "out/steps/a.json").read_text())
    assert set(marker) == {"name", "state", "key", "declared", "outputs", "summary", "seconds"}
    assert marker["state"] == "done" and marker["key"] == first.key
    assert marker["outputs"] == {"a/a.txt": sha256_file(tmp_path / "out/a/a.txt")}
    again = folder(tmp_path).run(step)
    assert again.status == "skipped" and again.summary == {"wrote": "a/a.txt"}
    assert again.key == first.key and again.seconds == marker["seconds"]
    assert work.calls == 1


def test_a_changed_setting_or_input_reruns_the_step(tmp_path):
    data = tmp_path / "dump.txt"
    data.write_text("one")
    work = Writer("a.txt", "alpha")

    def run(n: int) -> str:
        return folder(tmp_path).run(Step("a", ["a.txt"], work, {"n": n}, inputs=[str(data)])).status

    assert run(1) == "ran" and run(1) == "skipped"
    assert run(2) == "ran"
    os.utime(data, ns=(1, 1))  # a new stamp, the same content: the hash says nothing changed
    assert run(2) == "skipped"
    data.write_text("two")
    assert run(2) == "ran"


def test_a_step_reruns_when_what_it_reads_has_other_content(tmp_path):
    first, second = Writer("a.txt", "alpha"), Writer("b.txt", "beta")

    def run(text: str) -> list[str]:
        first.text = text
        steps = folder(tmp_path)
        a = steps.run(Step("a", ["a.txt"], first, {"text": text}))
        b = steps.run(Step("b", ["b.txt"], second, reads=["a.txt"]))
        return [a.status, b.status]

    assert run("alpha") == ["ran", "ran"]
    assert run("alpha") == ["skipped", "skipped"]
    assert run("ALPHA") == ["ran", "ran"]


@pytest.mark.parametrize(
    "harm, found",
    [
        (lambda out: (out / "a/a.txt").write_text("alphA"), "a/a.txt does not match"),
        (lambda out: (out / "a/a.txt").unlink(), "a/a.txt is missing"),
        (lambda out: (out / "a/extra.txt").write_text("x"), "a/extra.txt was not among"),
    ],
)
def test_a_damaged_output_is_found_and_redone(tmp_path, harm, found):
    work = Writer("a/a.txt", "alpha")
    step = Step("a", ["a"], work)
    folder(tmp_path).run(step)
    harm(tmp_path / "out")
    result = folder(tmp_path).run(step)
    assert result.status == "ran" and result.why.startswith(f"{DAMAGED}: {found}")
    assert sorted(p.name for p in (tmp_path / "out/a").iterdir()) == ["a.txt"]
    assert (tmp_path / "out/a/a.txt").read_text() == "alpha"
    assert folder(tmp_path).run(step).status == "skipped"


def test_a_killed_resumable_step_continues_from_its_partial_outputs(tmp_path):
    work = Writer("a/a.txt", "alpha", part="a/part.txt")
    step = Step("a", ["a"], work, resumable=True)
    work.fail = True
    with pytest.raises(RuntimeError):
        folder(tmp_path).run(step)
    assert json.loads((tmp_path / "out/steps/a.json").read_text())["state"] == "running"
    work.fail = False
    result = folder(tmp_path).run(step)
    assert result.status == "ran" and work.saw_partial == [False, True]


def test_a_killed_step_starts_afresh_when_not_resumable_or_its_key_changed(tmp_path):
    work = Writer("a/a.txt", "alpha", part="scratch/part.txt")
    work.fail = True
    with pytest.raises(RuntimeError):
        folder(tmp_path).run(Step("a", ["a"], work, scratch=["scratch"]))
    work.fail = False
    folder(tmp_path).run(Step("a", ["a"], work, scratch=["scratch"]))
    assert work.saw_partial == [False, False]  # not resumable: the scratch file was cleared

    work.fail = True
    with pytest.raises(RuntimeError):
        folder(tmp_path).run(Step("a", ["a"], work, {"v": 2}, resumable=True, scratch=["scratch"]))
    work.fail = False
    folder(tmp_path).run(Step("a", ["a"], work, {"v": 3}, resumable=True, scratch=["scratch"]))
    assert work.saw_partial[-1] is False  # another key: partial work of the old one is not kept


def test_a_step_must_write_every_output_and_read_only_what_was_written(tmp_path):
    with pytest.raises(LimaError, match="a: did not write its output b.txt"):
        folder(tmp_path).run(Step("a", ["a.txt", "b.txt"], Writer("a.txt", "alpha")))
    with pytest.raises(LimaError, match="c: reads nothing.txt, which no earlier step wrote"):
        folder(tmp_path).run(Step("c", ["c.txt"], Writer("c.txt", "x"), reads=["nothing.txt"]))


def test_the_same_key_in_another_folder_takes_the_outputs_from_the_cache(tmp_path):
    cache = tmp_path / "cache"
    work = Writer("a/a.txt", "alpha")
    step = Step("a", ["a"], work, {"n": 1})
    one = StepFolder(tmp_path / "one", "stages", label="test", cache=cache).run(step)
    two = StepFolder(tmp_path / "two", "stages", label="test", cache=cache).run(step)
    assert (one.status, two.status, work.calls) == ("ran", "cached", 1)
    assert two.summary == one.summary and two.key == one.key
    assert (tmp_path / "two/a/a.txt").samefile(tmp_path / "one/a/a.txt")  # a hard link
    again = StepFolder(tmp_path / "two", "stages", label="test", cache=cache).run(step)
    assert again.status == "skipped"
