"""wikiHow, Reddit, Super-NaturalInstructions and hand-written readers on native-format fixtures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from limakit.core.errors import LimaError
from limakit.sources.manual import read_manual
from limakit.sources.natural_instructions import load_task, read_tasks
from limakit.sources.reddit import scan_reddit, strip_tags
from limakit.sources.wikihow import clean_article, read_wikihow

FIX = Path(__file__).parent.parent / "fixtures"


# --- wikiHow -------------------------------------------------------------------------------------


def test_wikihow_csv_layout():
    arts = list(read_wikihow(FIX / "wikihow" / "wikihowAll.csv"))
    assert [a.prompt for a in arts] == [
        "How to Be an Organized Artist",
        "How to Grow Tomatoes in Pots",
        "How to Calm Down Before an Exam",
    ]
    first = arts[0].answer
    assert first.startswith("The following answer explains how to keep an art studio usable.")
    assert "\n\nMake an effort" in first  # paragraphs kept, the dump's leading commas dropped
    assert {a.meta["category"] for a in arts} == {"uncategorised"}


def test_wikihow_jsonl_with_categories():
    arts = list(read_wikihow(FIX / "wikihow" / "wikihow.jsonl"))
    assert len(arts) == 6
    assert {a.meta["category"] for a in arts} == {
        "Home and Garden",
        "Food and Entertaining",
        "Health",
    }
    repot = next(a for a in arts if a.prompt == "How to Repot a Houseplant")
    assert "The following answer assumes" in repot.answer


def test_this_article_rewrite_keeps_case():
    assert clean_article("This article shows.\nRead this article twice.") == (
        "The following answer shows.\n\nRead the following answer twice."
    )


def test_wikihow_unterminated_quote_is_named(tmp_path):
    p = tmp_path / "wikihowAll.csv"
    p.write_text(
        'Headline,Title,Text\n"a","How to X","fine"\n"b","How to Y","never closed\n',
        encoding="utf-8",
    )
    with pytest.raises(LimaError, match=r"wikihowAll\.csv:3: malformed CSV"):
        list(read_wikihow(p))


def test_wikihow_unknown_layout_and_ragged_row(tmp_path):
    p = tmp_path / "w.csv"
    p.write_text("Headline,Title\nx,y\n", encoding="utf-8")
    with pytest.raises(LimaError) as e:
        list(read_wikihow(p))
    msg = str(e.value)
    assert msg.startswith(f"{p}:1: unknown wikiHow CSV layout (columns seen: Headline, Title)")
    for layout in ("headline,title,text", "title,heading,paragraph", "title,result"):
        assert layout in msg
    assert "wikihow_options.columns" in msg
    p.write_text("Headline,Title,Text\nx,How to Y\n", encoding="utf-8")
    with pytest.raises(LimaError, match=r"w\.csv:2: row has 2 fields"):
        list(read_wikihow(p))


def test_wikihow_bad_bytes_reach_the_encoding_rule(tmp_path):
    from limakit.curation.rules import RulesConfig, encoding

    p = tmp_path / "w.csv"
    p.write_bytes(b"Headline,Title,Text\nx,How to Cook,Caf\xe9 food is good.\n")
    (art,) = read_wikihow(p)
    assert "undecodable" in encoding(art, RulesConfig())


def test_wikihow_per_step_rows_are_grouped_by_title_in_order():
    arts = list(read_wikihow(FIX / "wikihow" / "wikihow_steps.csv"))  # CRLF, one step per row
    assert [a.prompt for a in arts] == [
        "How to Descale a Kettle",
        "How to Fold a Fitted Sheet: 3 Simple Steps",
    ]
    kettle = arts[0].answer
    assert kettle.startswith("1. Fill the kettle halfway with equal parts water and white vinegar.")
    assert "\n\n2. Bring the mixture to a boil. Switch" in kettle
    assert kettle.endswith(
        "3. Rinse it out several times. Boil a kettle of clean water once and "
        "pour it away, so no vinegar taste is left."
    )  # no "[1] X Research source"
    assert "\r" not in kettle
    assert arts[1].answer.count("\n\n") == 1 and arts[1].meta["where"].endswith(
        "wikihow_steps.csv:5"
    )


def test_wikihow_title_result_layout_gets_how_to_and_its_steps():
    arts = list(read_wikihow(FIX / "wikihow" / "wikihow_lists.csv"))  # byte-order mark, LF
    assert [a.prompt for a in arts] == [
        "How to Clean a Cast Iron Pan",
        "How to Reset a Tripped Breaker",
    ]
    assert arts[1].answer == (
        "1. Find the breaker panel.\n\n"
        '2. Look for the switch sitting between "on" and "off".\n\n'
        '3. Push it fully to "off", then back to "on".'
    )
    bare = list(read_wikihow(FIX / "wikihow" / "wikihow_lists.csv", add_how_to=False))
    assert bare[0].prompt == "Clean a Cast Iron Pan"


def test_wikihow_column_mapping(tmp_path):
    p = tmp_path / "faq.csv"
    p.write_text(
        "Topic,Question,Answer\nKitchen,How to Boil Rice,Rinse it first.\nGarden,Water Ferns,Keep the soil damp.\n",
        encoding="utf-8",
    )
    cols = {"title": "Question", "text": "answer", "category": "Topic"}
    arts = list(read_wikihow(p, columns=cols))
    assert [(a.prompt, a.answer, a.meta["category"]) for a in arts] == [
        ("How to Boil Rice", "Rinse it first.", "Kitchen"),
        ("How to Water Ferns", "Keep the soil damp.", "Garden"),
    ]
    steps = tmp_path / "steps.csv"
    steps.write_text(
        "Name,Step\nBoil Rice,Rinse it.\nBoil Rice,Boil it.\nWater Ferns,Water them.\n"
    )
    arts = list(read_wikihow(steps, columns={"title": "Name", "step": "Step"}))
    assert [(a.prompt, a.answer) for a in arts] == [
        ("How to Boil Rice", "1. Rinse it.\n\n2. Boil it."),
        ("How to Water Ferns", "1. Water them."),
    ]
    with pytest.raises(
        LimaError,
        match=r"faq\.csv:1: wikiHow columns map to body, not in the header \(columns seen: Topic, Question, Answer\)",
    ):
        list(read_wikihow(p, columns={"title": "Question", "text": "Body"}))
    with pytest.raises(LimaError, match=r"must map 'title' and one of 'text'"):
        list(read_wikihow(p, columns={"title": "Question"}))
    with pytest.raises(LimaError, match=r"unknown role\(s\) \['body'\]"):
        list(read_wikihow(p, columns={"title": "Question", "body": "Answer"}))


def test_wikihow_jsonl_keys_can_be_mapped_too(tmp_path):
    p = tmp_path / "w.jsonl"
    p.write_text('{"Question": "Boil Rice", "Answer": "Rinse it first.", "Topic": "Kitchen"}\n')
    cols = {"title": "Question", "text": "Answer", "category": "Topic"}
    (art,) = read_wikihow(p, columns=cols)
    assert (art.prompt, art.answer, art.meta["category"]) == (
        "How to Boil Rice",
        "Rinse it first.",
        "Kitchen",
    )
    with pytest.raises(LimaError, match=r"w\.jsonl: the roles step and heading apply to CSV"):
        list(read_wikihow(p, columns={"title": "Question", "step": "Answer"}))


def test_wikihow_header_without_articles_is_an_error(tmp_path):
    p = tmp_path / "w.csv"
    p.write_text("title,result\n", encoding="utf-8")
    with pytest.raises(LimaError, match=r"w\.csv: no article after the header"):
        list(read_wikihow(p))


# --- Reddit --------------------------------------------------------------------------------------


def test_strip_tags():
    assert strip_tags("[WP] [OT] A dragon hoards words.") == (
        "A dragon hoards words.",
        ["WP", "OT"],
    )
    assert strip_tags("No tag here") == ("No tag here", [])


def _reddit_files():
    return [FIX / "reddit" / "RS_2019-01.ndjson", FIX / "reddit" / "RC_2019-01.ndjson"]


def test_writingprompts_pairs_best_top_level_story():
    scan = scan_reddit(_reddit_files())
    pairs = {ex.id: ex for ex in scan.pairs}
    assert list(pairs) == ["reddit-a1", "reddit-a2"]  # by prompt score
    a1 = pairs["reddit-a1"]
    assert a1.prompt == "Every lie you tell becomes true, but only for the person you told it to."
    # Not the higher-scored reply (k4), not the stickied bot comment (k1): story k2.
    assert a1.answer.startswith("The first lie was small.") and a1.meta["comment_id"] == "k2"
    # The deleted comment scored higher, but the surviving story is used.
    assert pairs["reddit-a2"].answer.startswith("Dear Sea,")
    rules = {rid: rule for rid, rule, _, _ in scan.rejected}
    assert rules == {"reddit-a3": "not_writing_prompt", "reddit-a4": "no_story"}
    assert scan.skipped["reply comments"] == 1 and scan.skipped["deleted or removed comments"] == 1


def test_askreddit_titles_become_test_prompts():
    scan = scan_reddit(_reddit_files(), test_prompts=70)
    titles = [ex.prompt for ex in scan.test_prompts]
    assert titles == [
        "What is a skill that took you years to learn but minutes to explain?",
        "Doctors of Reddit, what symptom should people never ignore?",
    ]
    assert all(ex.answer is None for ex in scan.test_prompts)


def test_reddit_zst_reads_like_plain(tmp_path):
    import zstandard

    files = []
    for src in _reddit_files():
        dst = tmp_path / (src.name + ".zst")
        dst.write_bytes(zstandard.ZstdCompressor().compress(src.read_bytes()))
        files.append(dst)
    plain, packed = scan_reddit(_reddit_files()), scan_reddit(files)
    assert [e.to_dict()["messages"] for e in packed.pairs] == [
        e.to_dict()["messages"] for e in plain.pairs
    ]


def test_reddit_bad_json_line_and_truncated_zst(tmp_path):
    p = tmp_path / "RS.ndjson"
    p.write_text(
        '{"id": "x", "subreddit": "WritingPrompts", "title": "[WP] ok", "score": 1}\n{"id": "y", "subr\n'
    )
    with pytest.raises(LimaError, match=r"RS\.ndjson:2: invalid JSON"):
        scan_reddit([p])
    import zstandard

    blob = zstandard.ZstdCompressor().compress(
        (FIX / "reddit" / "RC_2019-01.ndjson").read_bytes() * 20
    )
    z = tmp_path / "RC.ndjson.zst"
    z.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(LimaError, match=r"RC\.ndjson\.zst"):
        scan_reddit([z])


# --- Super-NaturalInstructions -------------------------------------------------------------------


def test_sni_one_example_per_task_prompt_is_definition_plus_input():
    tasks = {
        ex.meta["task"]: ex for ex in read_tasks(FIX / "natural_instructions" / "tasks", seed=0)
    }
    assert len(tasks) == 5  # README.md is not a task
    summ = tasks["task001_news_summarization"]
    definition, _, inp = summ.prompt.partition("\n\n")
    assert definition == "Given a news paragraph, write a one-sentence summary of it."
    raw = json.loads(
        (FIX / "natural_instructions" / "tasks" / "task001_news_summarization.json").read_text()
    )
    pairs = {i["input"]: i["output"][0] for i in raw["Instances"]}
    assert pairs[inp] == summ.answer
    assert summ.meta["categories"] == ["Summarization"]
    assert tasks["task005_title_generation_no_output"].answer == ""
    again = {
        ex.meta["task"]: ex.prompt
        for ex in read_tasks(FIX / "natural_instructions" / "tasks", seed=0)
    }
    assert again == {k: v.prompt for k, v in tasks.items()}


def test_sni_bad_json_names_line(tmp_path):
    (tmp_path / "task9_x.json").write_text('{\n "Definition": ["x"],\n "Instances": [\n')
    with pytest.raises(
        LimaError, match=r"task9_x\.json: invalid JSON \(.* at line \d+ column \d+\)"
    ):
        list(read_tasks(tmp_path))
    (tmp_path / "task9_x.json").write_text('{"Definition": ["x \\ud800"], "Instances": []}')
    with pytest.raises(LimaError, match=r"task9_x\.json: a lone surrogate"):
        load_task(tmp_path / "task9_x.json")
    (tmp_path / "task9_x.json").write_text('{"Definition": ["x"], "Instances": [NaN]}')
    with pytest.raises(LimaError, match=r"task9_x\.json: invalid JSON"):
        load_task(tmp_path / "task9_x.json")
    (tmp_path / "task9_x.json").write_text('{"Definition": ["x"]}')
    with pytest.raises(LimaError, match="lacks 'Instances'"):
        list(read_tasks(tmp_path))


# --- hand-written --------------------------------------------------------------------------------


def test_manual_yaml_and_jsonl():
    yaml_ex = list(read_manual(FIX / "manual" / "handwritten.yaml"))
    assert [e.id for e in yaml_ex] == [
        "manual-thank-you-note",
        "manual-refusal",
        "manual-multiturn",
        "manual-test-prompt",
    ]
    assert len(yaml_ex[2].messages) == 4 and yaml_ex[3].answer is None
    assert all(e.source == "manual" for e in yaml_ex)
    jsonl_ex = list(read_manual(FIX / "manual" / "handwritten.jsonl"))
    assert jsonl_ex[1].messages[0].role == "system" and jsonl_ex[2].answer is None


def test_manual_errors_name_place(tmp_path):
    p = tmp_path / "m.yaml"
    p.write_text("examples:\n  - messages: [\n")
    with pytest.raises(LimaError, match=r"m\.yaml:\d+:\d+: not valid YAML"):
        list(read_manual(p))
    p.write_text("- messages:\n  - {role: assistant, content: hi}\n")
    with pytest.raises(LimaError, match=r"m\.yaml: example 1: .*alternate"):
        list(read_manual(p))
    j = tmp_path / "m.jsonl"
    j.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n{"messages": \n')
    with pytest.raises(LimaError, match=r"m\.jsonl:2"):
        list(read_manual(j))
