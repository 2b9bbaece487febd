"""Judge-free checks and IFBench scoring."""

from __future__ import annotations

import json

import numpy as np
import pytest

from limakit.cli import main
from limakit.core.files import write_jsonl
from limakit.evaluation import auto_checks, export_ifbench_prompts, score_ifbench
from limakit.evaluation.checks import measures_table, repetition, system_names
from limakit.evaluation.ifbench import data_path, load_ifbench
from tests.evaluation.helpers import answer


def test_auto_checks_eot_length_repetition(tmp_path):
    loop = "the cat sat on the mat " * 20
    rows = [
        answer(0, "A short clean answer that stops.", "m", stop="eot", new_tokens=8),
        answer(1, loop, "m", stop="length", new_tokens=120),
        answer(2, "Another fine answer, done here.", "m", stop="eot"),
        answer(3, "No stop recorded.", "m"),
    ]
    rows[3]["meta"].pop("stop")
    path = tmp_path / "answers.jsonl"
    write_jsonl(path, rows)
    c = auto_checks(path)
    assert c["n"] == 4
    assert c["stop"] == {"eot": 2, "length": 1, "unknown": 1}
    assert c["new_tokens"]["mean"] == 64
    assert c["length_chars"]["max"] == len(loop)
    assert repetition(loop) > 0.9 and repetition("one two three four five") == 0.0
    m = c["measures"]
    assert list(m) == ["ends_turn", "stays_in_role", "repetition", "looping"]  # no refs, no IFBench
    assert m["ends_turn"]["value"] == 0.5 and m["looping"]["value"] == 0.25
    assert m["repetition"]["value"] == pytest.approx(repetition(loop) / 4, abs=1e-6)
    assert m["ends_turn"]["n"] == 4
    assert c["references"]["prompts_without"] == 4


def test_an_answer_cut_at_a_marker_it_wrote_neither_ends_its_turn_nor_stays_in_role(tmp_path):
    # The model wrote its next role header (`<|user|>`); generation cut it off, so the text is
    # clean, but the stop says the model went on past its turn.
    rows = [answer(0, "Paris.", "m", stop="marker"), answer(1, "Rome.", "m", stop="eot")]
    write_jsonl(tmp_path / "a.jsonl", rows)
    c = auto_checks(tmp_path / "a.jsonl")
    assert c["measures"]["ends_turn"]["value"] == 0.5
    assert c["measures"]["stays_in_role"]["value"] == 0.5
    assert c["role_breaks"] == {"chat marker": 1}


def test_an_empty_answer_is_an_answer_that_ended_its_turn_at_once(tmp_path):
    # A model may end its turn before writing anything: the checks (and the checkpoint choice
    # that reads them) count it, as a judge would see it, instead of refusing the file.
    write_jsonl(tmp_path / "a.jsonl", [answer(0, "", "m", stop="eot"), answer(1, "Hi.", "m")])
    c = auto_checks(tmp_path / "a.jsonl")
    assert c["n"] == 2 and c["measures"]["ends_turn"]["value"] == 1.0
    assert c["length_chars"]["min"] == 0


def test_measures_average_samples_per_prompt_and_carry_intervals(tmp_path):
    rows = [
        answer(0, "Fine.", "m", sample=0, stop="eot"),
        answer(0, "Fine, and\n<|user|>\nmore?", "m", sample=1, stop="length"),
        answer(1, "Done.", "m", sample=0, stop="eot"),
        answer(1, "Done.\n\nHuman: and now?", "m", sample=1, stop="eot"),
        answer(2, "Question 2: how do I do thing 2? Like this.", "m", sample=0, stop="eot"),
        answer(2, "Like this.", "m", sample=1, stop="length"),
    ]
    path = tmp_path / "answers.jsonl"
    write_jsonl(path, rows)
    c = auto_checks(path)
    ends, role = c["measures"]["ends_turn"], c["measures"]["stays_in_role"]
    # Per prompt: ends 1/2, 1, 1/2; in role 1/2, 1/2, 1/2 (prompt 2's first answer repeats it).
    assert ends["n"] == role["n"] == 3 == c["prompts"] and c["n"] == 6
    assert ends["value"] == round(2 / 3, 6) and role["value"] == 0.5
    assert ends["ci"][0] <= ends["value"] <= ends["ci"][1] and ends["ci"][0] >= 0.5
    assert role["ci"] == [0.5, 0.5]  # every prompt has the same value: no spread
    assert c["role_breaks"] == {"chat marker": 1, "role header": 1, "repeats the prompt": 1}


def _embed(texts):
    """Stand-in embedder: each text's vector is one axis per known topic word."""
    words = ["bread", "tax", "guitar"]
    v = np.array([[float(w in t) for w in words] + [0.01] for t in texts])
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_reference_similarity_from_a_references_file(tmp_path):
    topics = ["bread", "tax", "guitar"]
    path = tmp_path / "answers.jsonl"
    write_jsonl(path, [answer(i, f"about {t}", "m") for i, t in enumerate(topics)])
    refs = tmp_path / "refs.jsonl"
    rows = [answer(i, f"the {t} reference", "ref") for i, t in enumerate(topics)]
    rows.append({"id": "p9", "messages": [{"role": "user", "content": "no reference"}]})
    write_jsonl(refs, rows)
    c = auto_checks(path, references=refs, embed=_embed)
    sim = c["measures"]["reference_similarity"]
    assert sim["n"] == 3 and sim["value"] > 0.9
    assert list(c["measures"]).index("reference_similarity") == 2  # in the table's order
    assert c["references"] == {"file": str(refs), "file_without_reference": 1, "from_file": 3,
                               "from_answers": 0, "prompts_without": 0}  # fmt: skip
    # Each answer paired with another prompt's reference: no better than the floor.
    swapped = tmp_path / "swapped.jsonl"
    write_jsonl(
        swapped, [answer(i, f"about {t}", "m") for i, t in enumerate(topics[1:] + topics[:1])]
    )
    c = auto_checks(swapped, references=refs, embed=_embed)
    assert abs(c["measures"]["reference_similarity"]["value"]) < 0.1


def test_measures_table_three_systems():
    def checks(ends, n_ref):
        m = {"ends_turn": {"value": ends, "ci": [ends / 2, 1.0], "n": 20},
             "repetition": {"value": 0.0123, "ci": [0.01, 0.02], "n": 20}}  # fmt: skip
        if n_ref:
            m["reference_similarity"] = {"value": 0.2, "ci": [0.1, 0.3], "n": n_ref}
        m["made_up"] = {"value": 0.1, "ci": [0.0, 0.2], "n": 20}  # a measure MEASURES lacks
        return {"measures": m, "prompts": 20}

    lines = measures_table({"base": checks(0.1, 0), "in-context": checks(0.5, 20),
                            "lima": checks(0.9, 8)})  # fmt: skip
    assert lines[:2] == ["| measure | base | in-context | lima |", "|---|---:|---:|---:|"]
    rows = {line.split(" | ")[0].lstrip("| "): line for line in lines[2:]}
    assert list(rows) == [
        "ends its turn (`ends_turn`, higher is better)",
        "similarity to the reference, above chance (`reference_similarity`, higher is better)",
        "repeated 4-grams, mean share (`repetition`, lower is better)",
        "`made_up`",
        "prompts",
    ]
    assert rows["ends its turn (`ends_turn`, higher is better)"].endswith(
        "| 10% [5%, 100%] | 50% [25%, 100%] | 90% [45%, 100%] |"
    )
    sim = next(line for line in lines if "(`reference_similarity`" in line)
    assert sim.endswith("| - | 0.200 [0.100, 0.300] | 0.200 [0.100, 0.300] (n=8) |")
    assert rows["prompts"] == "| prompts | 20 | 20 | 20 |"
    assert system_names(["a/base.jsonl", "b/lima.jsonl"]) == ["base", "lima"]
    assert system_names(["a/model.jsonl", "b/model.jsonl"]) == ["a/model.jsonl", "b/model.jsonl"]


def test_ifbench_export_and_score(tmp_path):
    prompts = tmp_path / "ifbench.jsonl"
    assert export_ifbench_prompts(prompts) == 294 == len(load_ifbench())
    rows = [json.loads(x) for x in prompts.read_text().splitlines()]
    assert rows[0]["id"].startswith("ifbench-") and rows[0]["messages"][-1]["role"] == "user"
    # The package ships one real model's responses: use them as answers, plus one stray id.
    sample = [
        json.loads(x) for x in (data_path().parent / "sample_output.jsonl").read_text().splitlines()
    ]
    by_prompt = {s["prompt"]: s["response"] for s in sample}
    answers = []
    for r in rows:
        text = by_prompt.get(r["messages"][0]["content"]) or "no answer"
        answers.append({**r, "messages": r["messages"] + [{"role": "assistant", "content": text}]})
    answers.append(answer(999, "stray", "m"))
    path = tmp_path / "answers.jsonl"
    write_jsonl(path, answers)
    s = score_ifbench(path)
    assert s["matched_prompts"] == 294 and s["missing_prompts"] == 0 and s["unmatched_answers"] == 1
    assert 0 < s["instruction_strict"] <= s["instruction_loose"] < 1
    strict = s["prompt_strict_measure"]  # one sample per prompt: the same share, with its interval
    assert strict["value"] == s["prompt_strict"] and strict["n"] == s["prompts_scored"]
    assert strict["ci"][0] < strict["value"] < strict["ci"][1]
    c = auto_checks(path)  # answers to exported IFBench prompts: scored without asking
    assert c["measures"]["ifbench_strict"] == strict and c["ifbench"]["answers"] == 295
    # Checkers that need nltk data are counted apart, never scored as misses.
    if s["not_scorable_offline"]:
        assert sum(s["not_scorable_instructions"].values()) == s["not_scorable_offline"]
    assert s["instructions_scored"] + s["not_scorable_offline"] == sum(
        len(r["instruction_id_list"]) for r in load_ifbench()
    )


def test_ifbench_keyword_checker_scores_a_known_case(tmp_path):
    row = next(r for r in load_ifbench() if r["instruction_id_list"] == ["count:keywords_multiple"])
    kw = row["kwargs"][0]
    good = " ".join(
        [kw["keyword1"]]
        + [kw["keyword2"]] * 2
        + [kw["keyword3"]] * 3
        + [kw["keyword4"]] * 5
        + [kw["keyword5"]] * 7
    )
    base = {"id": f"ifbench-{row['key']}", "source": "ifbench", "meta": {}}
    write_jsonl(tmp_path / "good.jsonl", [{**base, "messages": [
        {"role": "user", "content": row["prompt"]}, {"role": "assistant", "content": good}]}])  # fmt: skip
    write_jsonl(tmp_path / "bad.jsonl", [{**base, "messages": [
        {"role": "user", "content": row["prompt"]}, {"role": "assistant", "content": "nothing"}]}])  # fmt: skip
    assert score_ifbench(tmp_path / "good.jsonl")["prompt_strict"] == 1.0
    assert score_ifbench(tmp_path / "bad.jsonl")["prompt_strict"] == 0.0


def test_cli_check_and_ifbench(tmp_path, capsys, monkeypatch):
    import limakit.evaluation.similarity as similarity

    monkeypatch.setattr(similarity, "default_embed", lambda device="auto": _embed)
    files = []
    for name, stop in (("base", "length"), ("in-context", "eot"), ("lima", "eot")):
        files.append(tmp_path / f"{name}.jsonl")
        write_jsonl(files[-1], [answer(i, f"about {t}", "m", stop=stop)
                                for i, t in enumerate(["bread", "tax"])])  # fmt: skip
    refs = tmp_path / "refs.jsonl"
    write_jsonl(refs, [answer(i, t, "ref") for i, t in enumerate(["bread", "tax"])])
    args = ["check", *map(str, files), "--references", str(refs)]
    assert main([*args, "--out", str(tmp_path / "c.json")]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0] == "| measure | base | in-context | lima |"
    assert (
        "| ends its turn (`ends_turn`, higher is better) | 0% [0%, 0%] | 100% [100%, 100%] |"
        in table[2]
    )
    assert any("`reference_similarity`" in line for line in table)
    written = json.loads((tmp_path / "c.json").read_text())
    assert written[str(files[2])]["measures"]["ends_turn"]["value"] == 1.0
    assert main(["check", str(files[0]), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["measures"]["ends_turn"]["value"] == 0.0
    assert main(["ifbench", "export", "--out", str(tmp_path / "p.jsonl")]) == 0
    assert "294" in capsys.readouterr().out
