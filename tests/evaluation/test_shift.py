"""``lima shift``: greedy answers of SmolLM2 measured against SmolLM2 are unshifted, against another
model clearly not; the ranks are the base's, the figures exact, the errors clear."""

from __future__ import annotations

import json
import re

import pytest
import torch

from limakit.cli import main
from limakit.core.errors import LimaError
from limakit.core.files import read_json
from limakit.evaluation.shift import Item, rank_class, rank_tokens, shift_summary, summarise
from limakit.evaluation.shift_page import shift_lines
from limakit.records.example import Example, Message

QUESTIONS = [
    "What is the capital of France?",
    "Write a haiku about the sea.",
    "How do I reverse a list in Python?",
]


def _greedy(folder, model: str, template: str, questions=QUESTIONS, name: str | None = None):
    """Greedy answers (temperature 0, no repetition penalty) of ``model`` in ``template``."""
    from limakit.generation import generate_answers
    from limakit.generation.config import DecodeConfig
    from limakit.models import load_model_for

    out = folder / "answers.jsonl"
    loaded = load_model_for(model, "cpu", "float32", template)
    prompts = [Example([Message("user", q)], id=f"q{i}") for i, q in enumerate(questions)]
    config = DecodeConfig(temperature=0, repetition_penalty=1.0, max_new_tokens=16,
                          template=template)  # fmt: skip
    generate_answers(loaded, prompts, config=config, out=out, model_name=name or model,
                     progress=False)  # fmt: skip
    return out, loaded


@pytest.fixture(scope="module")
def smollm2_own(tmp_path_factory):
    """Greedy answers of the packaged SmolLM2 in its own chat format, and the model that wrote
    them (loaded in that format)."""
    return _greedy(tmp_path_factory.mktemp("smollm2-own"), "smollm2-135m", "own")


@pytest.fixture(scope="module")
def tiny_own_dir(tmp_path_factory, smollm2_dir) -> str:
    """A random-weight tiny model with SmolLM2's own tokenizer and chat template: another model
    that shares the tokenizer."""
    from conftest import make_tiny_model
    from transformers import AutoTokenizer

    path = tmp_path_factory.mktemp("tiny-own")
    tok = AutoTokenizer.from_pretrained(smollm2_dir)
    make_tiny_model(tok).save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


def test_smollm2s_own_greedy_answers_are_unshifted_against_smollm2(smollm2_own, tmp_path):
    answers, smollm2 = smollm2_own
    s = shift_summary(smollm2, [answers], tmp_path / "shift")
    f = s["files"][0]
    assert f["n"] == 3 and f["tokens"] >= 3 * 4
    assert f["unshifted"]["value"] >= 0.99 and f["pooled"]["unshifted"] >= 0.99
    assert f["decoding"] == "greedy" and f["note"] is None and f["template"] == "own"
    assert f["apart"] == {}  # the own format's end of turn is a token of the base: ranked
    rows = [json.loads(x) for x in (tmp_path / "shift" / "tokens.jsonl").read_text().splitlines()]
    written = {ex["id"]: ex for ex in map(json.loads, answers.read_text().splitlines())}
    for r in rows:  # every token of every answer, ranked, giving the answer's text back
        ex = written[r["id"]]
        ended = ex["meta"]["stop"] == "eot"
        text = "".join(t["token"] for t in r["tokens"][: len(r["tokens"]) - ended])
        assert text == ex["messages"][-1]["content"]
        assert all(t["rank"] == 1 for t in r["tokens"] if t["token"] == t["base"])
    assert read_json(tmp_path / "shift" / "shift.json") == json.loads(json.dumps(s))


def test_a_different_model_gives_a_clearly_lower_share(smollm2_own, tiny_own_dir, tmp_path):
    """The same answers against a random-weight model that shares SmolLM2's tokenizer."""
    from limakit.models import load_model_for

    answers, _ = smollm2_own
    other = load_model_for(tiny_own_dir, "cpu", "float32", "own")
    f = shift_summary(other, [answers], tmp_path / "shift")["files"][0]
    assert f["unshifted"]["value"] < 0.2 and f["unshifted"]["ci"][1] < 0.5
    assert f["shifted"]["value"] > 0.6
    assert f["top_shifted"] and f["top_shifted"][0]["count"] >= f["top_shifted"][-1]["count"]
    page = (tmp_path / "shift" / "shift.html").read_text()
    assert "<svg" in page and page.count('class="shifted"') >= f["tokens"] // 2
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)  # no external asset


def test_greedy_tokens_in_limakits_format_are_all_ranked_first(smollm2_own):
    """Exact by construction, token by token: the ids SmolLM2 writes greedily after a prompt in
    limakit's format (with the EOT the format adds) are each the first choice of the same model
    run teacher-forced over them."""
    from limakit.generation.chat_format import ChatFormat
    from limakit.models import attach
    from limakit.records.template import Template

    _, own = smollm2_own
    model, tok = own.model, own.tokenizer
    attach(tok, model, Template())  # limakit's format on the same weights
    loaded = type(own).of(model, tok)
    fmt = ChatFormat.for_loaded(loaded)
    items = []
    for i, q in enumerate(QUESTIONS):
        ids = fmt.prompt_ids([Message("user", q)])
        with torch.no_grad():
            out = model.generate(torch.tensor([ids]), max_new_tokens=12, do_sample=False,
                                 repetition_penalty=1.0, eos_token_id=fmt.eot_id)  # fmt: skip
        items.append(Item(f"q{i}", 0, 1, q, ids, out[0, len(ids) :].tolist()))
    rank_tokens(loaded, items, batch_tokens=64)
    ranks = [r for it in items for r in it.ranks]
    assert len(ranks) >= 3 * 4 and ranks == [1] * len(ranks)


def test_limakit_answers_count_the_eot_apart_and_say_which_lost_tokens(tmp_path, tiny_own_dir):
    """The EOT limakit's format adds is no token of a base model: counted apart (a limakit
    checkpoint as the base has learned it: ranked). An answer whose text does not give back as
    many tokens as were generated is counted as re-tokenised."""
    from limakit.models import load_model_for
    from limakit.records.template import encode_text, save_tokenizer

    base = load_model_for(tiny_own_dir, "cpu", "float32")  # limakit's format attached here
    n = len(encode_text(base.tokenizer, "Blue, like the sea."))
    meta = {"model": "smollm2-135m", "template": "limakit",
            "decoding": {"temperature": 0.0, "top_p": 1.0, "repetition_penalty": 1.0}}  # fmt: skip
    rows = [("a", "Blue, like the sea.", "eot", n), ("b", "Blue, like the sea.", "length", n + 1),
            ("c", "", "eot", 0)]  # fmt: skip
    path = tmp_path / "answers.jsonl"
    path.write_text("".join(json.dumps({"id": i, "messages": [
        {"role": "user", "content": "Name a colour."}, {"role": "assistant", "content": text}],
        "meta": {**meta, "stop": stop, "new_tokens": k}}) + "\n" for i, text, stop, k in rows))  # fmt: skip
    f = shift_summary(base, [path], tmp_path / "shift")["files"][0]
    assert f["apart"] == {"<|eot|>": 2}  # a's and the empty c's; b ran to the length limit
    assert f["n"] == 2 and f["tokens"] == 2 * n  # c has no ranked token: in no share
    assert f["retokenised"] == 1  # b: one generated token is not in its text
    faithful = {json.loads(x)["id"]: json.loads(x)["faithful"]
                for x in (tmp_path / "shift" / "tokens.jsonl").read_text().splitlines()}  # fmt: skip
    assert faithful == {"a": True, "b": False, "c": True}
    assert "1 of 2 answers do not give back" in "\n".join(shift_lines(read_json(
        tmp_path / "shift" / "shift.json")))  # fmt: skip
    checkpoint = tmp_path / "checkpoint"
    base.model.save_pretrained(checkpoint)
    save_tokenizer(base.tokenizer, checkpoint, base.template)  # its template file, as training
    trained = load_model_for(str(checkpoint), "cpu", "float32")
    f = shift_summary(trained, [path], tmp_path / "again", models=[tiny_own_dir])["files"][0]
    assert f["apart"] == {} and f["tokens"] == 2 * n + 2  # the two EOTs ranked too


def test_ranks_are_those_of_the_full_forward_pass(tiny_model_dir):
    """Batched, padded and cut to the answer positions, the ranks are those of plain logits."""
    from limakit.models import load_model_for

    base = load_model_for(tiny_model_dir, "cpu", "float32")
    g = torch.Generator().manual_seed(0)
    items = []
    for n_context, n_answer in ((5, 9), (12, 3), (2, 14), (7, 1)):
        ids = torch.randint(0, 1000, (n_context + n_answer,), generator=g).tolist()
        items.append(Item("x", 0, 1, "", ids[:n_context], ids[n_context:]))
    rank_tokens(base, items, batch_tokens=40, chunk=3)  # several batches, several chunks
    for it in items:
        with torch.no_grad():
            logits = base.model(torch.tensor([it.context + it.answer])).logits[0].float()
        at = range(len(it.context) - 1, len(it.context) + len(it.answer) - 1)
        want = [int((logits[p] > logits[p, t]).sum()) + 1 for p, t in zip(at, it.answer)]
        assert it.ranks == want
        assert it.top == [int(logits[p].argmax()) for p in at]


def test_summary_figures_are_exact():
    names = {i: f"t{i}" for i in range(20)}
    a = Item("a", 0, 1, "", [0], [1, 2, 3, 4], ranks=[1, 2, 5, None], top=[1, 9, 9, 7])
    b = Item("b", 0, 1, "", [0], [3] * 12, ranks=[1] * 10 + [4, 1], top=[3] * 10 + [8, 3])
    s = summarise([a, b], names.get)
    assert [rank_class(r) for r in (1, 2, 3, 4, None)] == [
        "unshifted", "marginal", "marginal", "shifted", "apart"]  # fmt: skip
    # per answer: a = 1/3 unshifted, b = 11/12; the mean over answers
    assert s["unshifted"]["value"] == pytest.approx((1 / 3 + 11 / 12) / 2, abs=1e-6)
    assert s["unshifted"]["n"] == 2 and s["tokens"] == 15
    assert s["pooled"] == {"unshifted": round(12 / 15, 6), "marginal": round(1 / 15, 6),
                           "shifted": round(2 / 15, 6)}  # fmt: skip
    first, middle, late = s["positions"]
    assert first["span"] == "1-10" and first["tokens"] == 13  # a's 3 ranked + b's first 10
    assert first["shifted"]["value"] == pytest.approx((1 / 3 + 0) / 2, abs=1e-6)
    assert middle["tokens"] == 2 and middle["shifted"]["value"] == pytest.approx(0.5)
    assert late["tokens"] == 0 and late["shifted"]["value"] is None
    assert (
        s["top_shifted"]
        == [
            {"token": "t3", "id": 3, "count": 2, "seen": 13, "base": "t9"},
        ]
        or s["top_shifted"][0]["count"] == 2
    )
    assert s["apart"] == {"t4": 1}


def test_sampled_answers_are_said_to_be_sampled(smollm2_own, tmp_path, tiny_own_dir):
    from limakit.models import load_model_for

    answers, _ = smollm2_own
    rows = [json.loads(x) for x in answers.read_text().splitlines()]
    for r in rows:
        r["meta"]["decoding"].update(temperature=0.7, top_p=0.9, repetition_penalty=1.2)
    sampled = tmp_path / "sampled.jsonl"
    sampled.write_text("".join(json.dumps(r) + "\n" for r in rows))
    base = load_model_for(tiny_own_dir, "cpu", "float32", "own")
    s = shift_summary(base, [sampled], tmp_path / "o")
    f = s["files"][0]
    assert f["decoding"].startswith("sampled (temperature 0.7")
    assert "not greedy" in f["note"]
    lines = "\n".join(shift_lines(s, "../shift/"))
    assert "not greedy" in lines and "](../shift/shift_positions.svg)" in lines
    assert "Llama-2-7b-chat vs Llama-2-7b 7.8%" in lines
    assert re.search(r"\| smollm2-135m \| sampled .* \| 3 \| \d+ \| \d+\.\d% \[", lines)


def test_answers_the_base_cannot_measure_are_refused(smollm2_own, tmp_path, tiny_model_dir,
                                                      tiny_own_dir):  # fmt: skip
    from conftest import make_tiny_model

    from limakit.models import load_model_for
    from tests.records.test_template import bpe_tokenizer

    answers, _ = smollm2_own
    base = load_model_for(tiny_own_dir, "cpu", "float32", "own")
    other = tmp_path / "bpe-model"
    tok = bpe_tokenizer(with_bos=False)
    make_tiny_model(tok).save_pretrained(other)
    tok.save_pretrained(other)
    with pytest.raises(LimaError, match="whose tokenizer is not the base"):
        shift_summary(base, [answers], tmp_path / "o", models=[str(other)])
    rows = [json.loads(x) for x in answers.read_text().splitlines()]
    for r in rows:
        r["meta"]["model"] = "my-finetune"
    renamed = tmp_path / "renamed.jsonl"
    renamed.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(LimaError, match="pass --answers-model"):
        shift_summary(base, [renamed], tmp_path / "o")
    limakit = load_model_for(tiny_model_dir, "cpu", "float32")
    with pytest.raises(LimaError, match="answers in the own format, and the base is loaded"):
        shift_summary(limakit, [answers], tmp_path / "o")
    assert not (tmp_path / "o").exists()  # refused before anything is written


def test_the_command(smollm2_own, tmp_path, tiny_own_dir, capsys):
    answers, _ = smollm2_own
    out = tmp_path / "cli"
    args = ["shift", "--base", tiny_own_dir, "--answers", str(answers), "--out", str(out),
            "--device", "cpu", "--dtype", "float32"]  # fmt: skip
    assert main([*args, "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == read_json(out / "shift.json")
    assert printed["device"] == "cpu" and printed["dtype"] == "float32"
    assert main(args) == 0
    assert "unshifted" in capsys.readouterr().out
    assert main([*args, "--answers-model", str(tmp_path / "nowhere")]) == 2
    assert "nowhere" in capsys.readouterr().err
    # Files are named by the model their answers record (the file's name where two record one),
    # not by the checkpoint whose tokenizer was checked.
    again = tmp_path / "again.jsonl"
    again.write_bytes(answers.read_bytes())
    recorded = json.loads(answers.read_text().splitlines()[0])["meta"]["model"]
    two = ["shift", "--base", tiny_own_dir, "--answers", str(answers), str(again), "--out",
           str(tmp_path / "two"), "--answers-model", tiny_own_dir, "--device", "cpu", "--json"]  # fmt: skip
    assert main(two) == 0
    files = json.loads(capsys.readouterr().out)["files"]
    assert [f["model"] for f in files] == [
        f"{recorded} ({answers.name})",
        f"{recorded} (again.jsonl)",
    ]
