"""Each LIMA rule at and around its threshold, and the HTML -> Markdown cleaner."""

from __future__ import annotations

import pytest

from limakit.curation.markdown import html_to_markdown
from limakit.curation.rules import (
    RulesConfig,
    answer_length,
    answer_score,
    check,
    empty,
    encoding,
    first_person,
    meta_reference,
    question_score,
)
from limakit.records.example import Example, Message

CFG = RulesConfig()


def ex(answer: str = "An answer.", prompt: str = "A question?", **meta) -> Example:
    return Example([Message("user", prompt), Message("assistant", answer)], meta=meta)


@pytest.mark.parametrize(
    "n, ok", [(1199, False), (1200, True), (2000, True), (4096, True), (4097, False)]
)
def test_answer_length_bounds(n, ok):
    assert (answer_length(ex("x" * n), CFG) is None) is ok


def test_answer_length_is_configurable():
    assert (
        answer_length(ex("x" * 50), RulesConfig(min_answer_chars=10, max_answer_chars=60)) is None
    )


@pytest.mark.parametrize("score, ok", [(9, False), (10, True), (11, True), (-3, False)])
def test_answer_score_threshold(score, ok):
    assert (answer_score(ex(answer_score=score), CFG) is None) is ok


def test_scores_missing_means_the_rule_does_not_apply():
    assert answer_score(ex(), CFG) is None and question_score(ex(), CFG) is None


@pytest.mark.parametrize("score, ok", [(-1, False), (0, True), (5, True)])
def test_question_score_threshold(score, ok):
    assert (question_score(ex(question_score=score), CFG) is None) is ok
    assert question_score(ex(question_score=-9), RulesConfig(min_question_score=None)) is None


@pytest.mark.parametrize(
    "text, hit",
    [
        ("I think the oven is too hot.", "I"),
        ("In my experience it works.", "my"),
        ("I'm sure it helps.", "I'm"),
        ("Let me explain.", "me"),
        ("My advice: wait.", "My"),
        ("I\u2019ve tried it.", "I\u2019ve"),
        ("The mine shaft is deep.", "mine"),
    ],
)
def test_first_person_words(text, hit):
    assert first_person(ex(text), CFG) == f"first-person word {hit!r}"


@pytest.mark.parametrize(
    "text",
    [
        "Use a hot pan, i.e. smoking.",
        "Item i of the list.",
        "Memory and mystery are different words.",
        "Set `my_var = 1` first.",
        "Run this:\n\n```\nfor I in range(3):\n    print(me)\n```\n\nDone.",
        "World War II ended in 1945.",
    ],
)
def test_not_first_person(text):
    assert first_person(ex(text), CFG) is None


def test_first_person_in_code_when_asked():
    assert (
        first_person(ex("Use `my_var`. Then `me`."), RulesConfig(check_code=True))
        == "first-person word 'me'"
    )


@pytest.mark.parametrize(
    "text",
    [
        "As mentioned above, rest the dough.",
        "Unlike the other answers, this works.",
        "This answer assumes a gas oven.",
        "Stack Exchange has a good FAQ.",
        "EDIT: fixed the typo.",
        "The accepted answer is wrong.",
    ],
)
def test_meta_references(text):
    assert meta_reference(ex(text), CFG).startswith("refers to other answers or the site")


@pytest.mark.parametrize(
    "text", ["Edit the file with any editor.", "Answering the phone politely.", "Open the valve."]
)
def test_not_meta_references(text):
    assert meta_reference(ex(text), CFG) is None


def test_phrase_lists_are_config():
    cfg = RulesConfig(meta_phrases=["per the manual"], first_person_words=["we"])
    assert meta_reference(ex("Per the manual, yes."), cfg)
    assert first_person(ex("We recommend it."), cfg) == "first-person word 'We'"
    assert first_person(ex("I recommend it."), cfg) is None


def test_hygiene_rules():
    assert empty(ex("   "), CFG) == "message 2 (assistant) is empty"
    assert empty(Example([], id="x"), CFG) == "no messages"
    assert "U+FFFD" in encoding(ex("caf\ufffd"), CFG)
    assert "undecodable" in encoding(ex("caf\udce9"), CFG)
    assert "NUL" in encoding(ex("a\x00b"), CFG)
    assert encoding(ex("café ✓ 中文"), CFG) is None


def test_check_returns_first_failing_rule():
    bad = ex("I wrote this.", answer_score=3)
    assert check(bad, ["answer_score", "first_person"], CFG) == (
        "answer_score",
        "answer score 3 < 10",
    )
    assert check(bad, ["first_person"], CFG)[0] == "first_person"
    assert check(ex("x" * 1500), ["empty", "answer_length"], CFG) is None
    with pytest.raises(ValueError, match="unknown rule 'nope'"):
        check(bad, ["nope"], CFG)


def test_html_to_markdown_keeps_code_lists_drops_links_images():
    html = (
        '<p>Use <a href="https://x.org/y">the docs</a> &amp; <strong>care</strong> &lt;3 &eacute;</p>'
        '<p><img src="a.png" alt="a picture"></p>'
        "<pre><code>if a &lt; b:\n    print(a)\n</code></pre>"
        "<ul><li>one</li><li>two</li></ul><ol><li>first</li><li>second</li></ol>"
        "<script>alert(1)</script><h2>Section</h2><p>snake_case and *stars*</p>"
    )
    md = html_to_markdown(html)
    assert "Use the docs & **care** <3 é" in md
    assert "https://x.org" not in md and "a.png" not in md and "a picture" not in md
    assert "```\nif a < b:\n    print(a)\n```" in md
    assert "- one\n- two" in md and "1. first\n2. second" in md
    assert "alert" not in md and "## Section" in md
    assert "snake_case and *stars*" in md
    assert "\n\n\n" not in md
    assert html_to_markdown("") == ""


def test_a_rejection_with_a_huge_meta_keeps_a_bounded_excerpt():
    import io
    import json

    from limakit.curation.gather import Funnel
    from limakit.records.example import Example, Message

    f = io.StringIO()
    funnel = Funnel(f)
    small = Example([Message("user", "q?"), Message("assistant", "a")], meta={"site": "x"})
    huge = Example([Message("user", "q?"), Message("assistant", "a")], meta={"blob": "z" * 10**6})
    funnel.reject("pool", "1", "too_short", "short", small)
    funnel.reject("pool", "2", "too_short", "short", huge)
    rows = [json.loads(line) for line in f.getvalue().splitlines()]
    assert rows[0]["meta"] == {"site": "x"}
    assert rows[1]["meta"]["chars"] > 10**6 and len(rows[1]["meta"]["excerpt"]) == 2000
    assert len(f.getvalue()) < 10_000
