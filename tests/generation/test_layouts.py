"""Plain-text layouts for a pretrained model: the exact prompt text, where answers end, and
sampling through them."""

from __future__ import annotations

import pytest

from limakit.core.errors import LimaError
from limakit.generation import generate_answers
from limakit.generation.batch import model_for_answers
from limakit.generation.chat_format import ChatFormat
from limakit.generation.config import DecodeConfig
from limakit.generation.layouts import IN_CONTEXT, PLAIN, PREAMBLE, pick_shots
from limakit.models import LoadedModel
from limakit.records.example import Example, Message, write_examples

SHOT = Example([Message("user", "How do I boil an egg?"),
                Message("assistant", "Put it in boiling water for 9 minutes.\n\nThen cool it.")],
               "manual", "s1")  # fmt: skip


def test_the_in_context_prompt_is_exactly_the_documented_layout():
    text = IN_CONTEXT.render([Message("user", "  Why is the sea salty? ")], [SHOT])
    assert text == (
        PREAMBLE + "\n\n"
        "# Query:\n```\nHow do I boil an egg?\n```\n\n"
        "# Answer:\n```\nPut it in boiling water for 9 minutes.\n\nThen cool it.\n```\n\n"
        "# Query:\n```\nWhy is the sea salty?\n```\n\n"
        "# Answer:\n```\n"
    )
    assert PREAMBLE.startswith("# About this log\n\n") and "# Query:" in PREAMBLE


def test_the_plain_layout_and_earlier_turns():
    messages = [Message("user", "Hi?"), Message("assistant", "Hello."), Message("user", "Name?")]
    assert PLAIN.render(messages) == "Question: Hi?\n\nAnswer: Hello.\n\nQuestion: Name?\n\nAnswer:"


def test_an_answer_loses_the_layouts_closing_fence_only():
    assert IN_CONTEXT.answer("Salt comes from rocks.\n```\n\n") == "Salt comes from rocks."
    code = "Use:\n```\nprint(1)\n```\nDone."
    assert IN_CONTEXT.answer(code + "\n```") == code
    assert PLAIN.answer(" It is.\n") == "It is."


def test_shots_are_short_single_turn_examples_drawn_by_seed():
    exs = [Example([Message("user", f"q{i}"), Message("assistant", "a" * (10 * i))], "m", f"e{i}")
           for i in range(1, 9)]  # fmt: skip
    multi = Example([Message("user", "q"), Message("assistant", "a"), Message("user", "r"),
                     Message("assistant", "b")], "m", "multi")  # fmt: skip
    picked = pick_shots([*exs, multi], k=3, max_chars=50, seed=0)
    assert len(picked) == 3 and all(len(e.answer) <= 50 for e in picked)
    assert [e.id for e in picked] == sorted((e.id for e in picked), key=lambda i: int(i[1:]))
    assert picked == pick_shots([*exs, multi], k=3, max_chars=50, seed=0)


def test_the_format_stops_at_the_layout_markers_and_counts_them_as_the_end_of_turn(
    tiny_model_dir,
):
    from limakit.models import load_model_for

    loaded = load_model_for(tiny_model_dir, "cpu", "float32", "plain")
    assert loaded.template is None  # used as it is: no limakit EOT attached
    fmt = ChatFormat.plain(loaded, IN_CONTEXT, [SHOT])
    assert fmt.markers == ("# Query:", "# Answer:") and fmt.marker_stop == "eot"
    tok = loaded.tokenizer
    ids = fmt.prompt_ids([Message("user", "Why? <|im_end|>")])
    assert tok.decode(ids) == IN_CONTEXT.render([Message("user", "Why? <|im_end|>")], [SHOT])
    assert tok.convert_tokens_to_ids("<|im_end|>") not in ids  # content stays text
    assert ChatFormat.for_loaded(LoadedModel.of(loaded.model, tok, "limakit")).marker_stop == (
        "marker"
    )


def test_sampling_in_a_layout_records_it(tmp_path, tiny_model_dir):
    shots = tmp_path / "shots.jsonl"
    write_examples(shots, [SHOT])
    prompts = [Example([Message("user", "Why is the sea salty?")], "t", "p1")]
    cfg = DecodeConfig(max_new_tokens=5, template="in-context", shots=str(shots))
    out = tmp_path / "a.jsonl"
    load = model_for_answers(tiny_model_dir, device="cpu", dtype="float32", template=cfg.template)
    (ans,) = generate_answers(load, prompts, config=cfg, out=out, progress=False)
    assert ans.meta["template"] == "in-context" and ans.meta["stop"] in ("eot", "length")
    assert ans.meta["decoding"]["shots"] == str(shots)
    with pytest.raises(LimaError, match="needs `shots`"):
        generate_answers(load, prompts, config=DecodeConfig(template="in-context"), progress=False)
