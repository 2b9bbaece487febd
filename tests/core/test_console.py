"""The one console: messages and bars go to stderr, never stdout; bars leave nothing in a log."""

from __future__ import annotations

import io
import sys

from limakit.core.console import note, progress, warn


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_note_and_warn_write_their_text_to_stderr_only(capsys):
    note("skipped 2 example(s) with no trained token")
    warn("run.jsonl: 3 answers to questions not in questions.jsonl")
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        "skipped 2 example(s) with no trained token\n"
        "warning: run.jsonl: 3 answers to questions not in questions.jsonl\n"
    )


def test_a_note_is_written_as_it_is(capsys):
    message = "[backtranslate] :smile: " + "x" * 300  # no markup, no emoji, no wrapping
    note(message, style="dim")
    assert capsys.readouterr() == (("", message + "\n"))


def test_a_bar_is_transient_off_a_terminal(capsys):
    with progress("answers", total=3, status="") as bar:
        bar.advance()
        bar.update(completed=3, status="12.5 tok/s")
    assert capsys.readouterr() == ("", "")


def test_a_bar_stays_on_a_terminal_and_notes_land_above_it(capsys, monkeypatch):
    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    with progress("embedding", total=3) as bar:
        note("cache: 1 of 3 scored before")
        bar.advance(3)
    shown = terminal.getvalue()
    assert "cache: 1 of 3 scored before" in shown
    assert "embedding" in shown
    assert "3/3" in shown
    assert shown.index("cache: 1 of 3") < shown.rindex("3/3")
    assert capsys.readouterr().out == ""


def test_a_disabled_bar_draws_nothing_even_on_a_terminal(monkeypatch):
    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    with progress("train", total=2, eta=True, enabled=False) as bar:
        bar.advance(2)
    assert terminal.getvalue() == ""


def test_a_byte_bar_counts_sizes(monkeypatch):
    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    with progress("reading dump.xml", total=3000, unit="bytes") as bar:
        bar.advance(1500)
    assert "1.5/3.0 kB" in terminal.getvalue()
