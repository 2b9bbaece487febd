"""The role detector: answers that go on to write the user's side, and good answers that do not."""

from __future__ import annotations

import pytest

from limakit.evaluation.role import role_break, stays_in_role

CAPITAL = "What is the capital of France?"

# (prompt, answer, the rule that must fire)
BREAKS = [
    (CAPITAL, "Paris.<|eot|>\n<|user|>\nAnd of Spain?", "chat marker"),
    (CAPITAL, "Paris.\n<|im_start|>user\nAnd of Spain?", "chat marker"),
    (CAPITAL, "Paris.<end_of_turn>\n<start_of_turn>user\nAnd of Spain?", "chat marker"),
    (CAPITAL, "Paris. [INST] And of Spain? [/INST]", "chat marker"),
    (CAPITAL, "Paris.\n\n### Human: And of Spain?", "role header"),
    (CAPITAL, "Paris.\n\nHuman: thanks! And Spain?", "role header"),
    (CAPITAL, "Paris.\nUser: and Spain?\nAssistant: Madrid.", "role header"),
    (CAPITAL, "Paris.\n**User:** and Spain?", "role header"),
    (CAPITAL, "Paris is the capital.\n\nQ: What is the capital of Germany?", "role header"),
    (CAPITAL, "Paris.\n\nQuestion: What is the capital of Spain?", "role header"),
    (CAPITAL, "Paris.\n```\n\n# Query:\n```What is the capital of Spain?```", "role header"),
    (CAPITAL, "Paris.\n### Instruction:\nName the capital of Spain.", "role header"),
    (CAPITAL, "What is the capital of France? Paris.", "repeats the prompt"),
    (
        CAPITAL + "\nAnswer in one word.",
        "Paris.\n\nwhat is the capital  of France?",
        "repeats the prompt",
    ),
    (
        "Write a short poem about the sea",
        "and the sky, in the manner of Keats.",
        "continues the prompt",
    ),
    ("Write a short poem about the sea", ", then one about the sky.", "continues the prompt"),
]

# Good answers that merely mention users or questions, quote the question or restate its topic.
GOOD = [
    (CAPITAL, "Paris is the capital of France."),
    (CAPITAL, 'You asked: "What is the capital of France?" The answer is Paris.'),
    (CAPITAL, "> What is the capital of France?\n\nParis, since the 10th century."),
    ("How do I reset my password?", "The user can reset it under Settings > Account."),
    ("How do I reset my password?", "As a user, open Settings.\nUsers: see the help page."),
    ("What makes a good question?", "A good question is short. The question: is it clear?"),
    ("Explain the history of the Roman Empire", "The history of the Roman Empire spans..."),
    ("Write a python function that reverses a string", "def rev(s):\n    return s[::-1]"),
    ("Explain query strings", "Query parameters: the part after `?`, e.g. `?user=ann`."),
    ("Who wrote Hamlet?", "Shakespeare wrote it around 1600; the Human condition is its theme."),
    ("Hi", "Hi! How can I help?\nHi"),  # a prompt line too short to count as repeated
    ("Tell me a joke.", "and then the duck said: put it on my bill."),  # the prompt is finished
]


@pytest.mark.parametrize(("prompt", "answer", "rule"), BREAKS)
def test_role_breaks_are_found_with_their_rule(prompt, answer, rule):
    found = role_break(prompt, answer)
    assert found is not None and found.rule == rule, found
    assert found.at.strip() and found.at in answer  # the offending text, as the answer has it
    assert not stays_in_role(prompt, answer)


@pytest.mark.parametrize(("prompt", "answer"), GOOD)
def test_good_answers_stay_in_role(prompt, answer):
    assert role_break(prompt, answer) is None
    assert stays_in_role(prompt, answer)


def test_the_first_break_in_the_answer_is_reported():
    answer = "Paris.\nUser: and Spain?\n<|user|>\nand Italy?"
    found = role_break(CAPITAL, answer)
    assert found is not None and found.rule == "role header" and found.at == "User:"
